"""union: the parts' features side by side, normalised per part and weighted (scikit-learn's FeatureUnion)."""

from __future__ import annotations

import textwrap

import cv2
import numpy as np
import pytest
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import StandardScaler, normalize

from featbench import create_extractor
from featbench.config import load_experiment
from featbench.errors import ConfigError

HOG = {"name": "hog", "size": 32}
HIST = {"name": "color-hist", "bins": [8, 4, 4], "grid": 2, "norm": "hellinger"}


def _images(seed: int, n: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(n):
        img = rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)
        cv2.GaussianBlur(img, (0, 0), 1.0, dst=img)
        imgs.append(img if i % 4 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))  # a few gray images too
    return imgs


def _part(table: dict, train):
    params = {k: v for k, v in table.items() if k != "name"}
    return create_extractor(table["name"], **params).fit(train)


@pytest.mark.parametrize("normalize_", ["none", "l2", "standard"])
@pytest.mark.parametrize("weights", [None, [2.0, 0.5]])
def test_union_of_hog_and_color_hist_is_the_hstack_of_the_parts(normalize_, weights):
    train, test = _images(0), _images(1, 6)
    union = create_extractor("union", parts=[HOG, HIST], normalize=normalize_, weights=weights).fit(train)
    w = weights or [1.0, 1.0]
    blocks = []
    for table, wi in zip([HOG, HIST], w):
        part = _part(table, train)
        X = part.transform(test)
        if normalize_ == "l2":
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
        elif normalize_ == "standard":  # fitted on the training images only
            X = StandardScaler().fit(part.transform(train)).transform(X)
        blocks.append(wi * X)
    got = union.transform(test)
    assert got.dtype == np.float32 and got.shape == (6, sum(b.shape[1] for b in blocks))
    np.testing.assert_allclose(got, np.hstack(blocks), rtol=1e-5, atol=1e-6)
    assert union.spec.fitted is (normalize_ == "standard")  # hog and color-hist learn nothing


def test_union_matches_sklearn_feature_union_with_weights():
    train, test = _images(2), _images(3, 5)
    hog, hist = _part(HOG, train), _part(HIST, train)
    ref = FeatureUnion([("hog", hog), ("hist", hist)], transformer_weights={"hog": 3.0, "hist": 1.0})
    union = create_extractor("union", parts=[HOG, HIST], weights=[3.0, 1.0]).fit(train)
    np.testing.assert_allclose(union.transform(test), ref.transform(test), rtol=1e-6)


def test_l2_keeps_zero_vectors_zero():
    X = np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(normalize(X), X)  # what normalize = "l2" relies on
    flat = [np.full((32, 32), 128, np.uint8)] * 2  # HOG of a flat image is all zero
    union = create_extractor("union", parts=[HOG, HIST], normalize="l2").fit(flat)
    out = union.transform(flat)
    n_hog = _part(HOG, flat).transform(flat[:1]).shape[1]
    assert np.isfinite(out).all() and not out[:, :n_hog].any()
    np.testing.assert_allclose(np.linalg.norm(out[:, n_hog:], axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("parts,match", [
    ([HOG, {"name": "hogg"}], r"parts\[1\] \(hogg\): unknown extractor 'hogg'; did you mean 'hog'"),
    ([{"name": "hog", "sise": 8}], r"parts\[0\] \(hog\): unknown parameter 'sise'.*did you mean 'size'"),
    ([HIST, {"name": "hog", "size": 2}], r"parts\[1\] \(hog\): The 'size' parameter of HOG must be"),
    ([{"size": 8}], r"parts\[0\] must be an extractor table with a name"),
    (["hog"], r"parts\[0\] must be an extractor table"),
    ([], r"parts is empty"),
    (None, r"parts is empty"),
])
def test_bad_parts_are_config_errors_naming_the_part(parts, match):
    with pytest.raises(ConfigError, match=match):
        create_extractor("union", parts=parts).validate()
    with pytest.raises(ConfigError, match=match):
        create_extractor("union", parts=parts).fit(_images(0, 2))


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [1.0, float("nan")], [1.0, "a"]])
def test_bad_weights_are_config_errors(weights):
    with pytest.raises(ConfigError, match=r"weights must be one finite number >= 0 per part \(2 parts\)"):
        create_extractor("union", parts=[HOG, HIST], weights=weights).validate()


def test_spec_follows_the_parts():
    gray_fast = create_extractor("union", parts=[HOG, {"name": "lbp"}])
    assert (gray_fast.spec.fitted, gray_fast.spec.parallel, gray_fast.spec.color) == (False, True, "gray")
    with_sift = create_extractor("union", parts=[{"name": "sift", "mode": "dense"}, HIST])
    assert (with_sift.spec.fitted, with_sift.spec.color) == (True, "rgb")
    deep = create_extractor("union", parts=[HOG, {"name": "keras-app", "model": "MobileNet", "alpha": 0.25,
                                                  "weights": "random"}])
    assert deep.spec.family == "deep" and not deep.spec.parallel and deep.weights_label == "random"
    assert gray_fast.weights_label == ""


def test_report_info_prefixes_parts_and_sums_additive_numbers():
    train = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.ndim == 3 else im for im in _images(4)]
    sift = {"name": "sift", "mode": "dense", "step": 8, "scales": [16], "n_words": 4, "min_contrast": 0.0}
    union = create_extractor("union", parts=[sift, HOG, dict(sift, n_words=3)]).fit(train)
    parts = [_part(t, train) for t in (sift, dict(sift, n_words=3))]
    info = union.report_info()
    assert info["sift#0.descriptors_per_image"] == parts[0].report_info()["descriptors_per_image"]
    assert "sift#2.codebook_not_converged" in info and not any(k.startswith("hog.") for k in info)
    assert info["codebook_not_converged"] == sum(p.report_info()["codebook_not_converged"] for p in parts)


def test_empty_input_has_the_union_dimension():
    union = create_extractor("union", parts=[HOG, HIST]).fit(_images(0, 3))
    assert union.transform([]).shape == (0, union.transform(_images(0, 1)).shape[1])


def test_experiment_file_expresses_a_union_with_a_label(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent("""
        name = "u"
        [[datasets]]
        name = "digits"
        [[extractors]]
        name = "union"
        label = "hog+color-hist"
        parts = [{name = "hog", size = 32}, {name = "color-hist", bins = [8, 4, 4], grid = 2}]
        weights = [1.0, 2.0]
        normalize = "l2"
        [[classifiers]]
        name = "logreg"
    """))
    cfg = load_experiment(path)
    (row,) = cfg.extractors
    assert row.label == "hog+color-hist" and row.name == "union"
    assert row.params["parts"] == [{"name": "hog", "size": 32}, {"name": "color-hist", "bins": [8, 4, 4], "grid": 2}]
    bad = path.read_text().replace('name = "color-hist"', 'name = "colour-hist"')
    path.write_text(bad)
    with pytest.raises(ConfigError, match=r"\[\[extractors\]\] #1: union: parts\[1\] \(colour-hist\)"):
        load_experiment(path)
