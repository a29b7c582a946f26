"""Haar-like features (``haar``) and OpenCV cascades (``haar-cascade``).

The reference for ``haar`` is scikit-image itself: the features ``fit`` keeps must be the
same numbers as the matching columns of ``haar_like_feature``'s full vector, and
``transform`` must compute only them.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from skimage import data as skdata
from skimage.feature import haar_like_feature, haar_like_feature_coord
from skimage.transform import integral_image

import featbench.extractors.haar as haar_module
from featbench import create_extractor, load_dataset
from featbench.cache import FeatureCache
from featbench.classifiers import LogReg, fit_with_c_search
from featbench.datasets.base import ArrayImageSet
from featbench.errors import ConfigError
from featbench.evaluation.splits import Split
from featbench.extractors.haar import FEATURE_TYPES, available_cascades, haar_feature_boxes, haar_features
from featbench.features import split_features as _features


@pytest.fixture(scope="module")
def faces():
    ds = load_dataset("faces")
    return np.stack([ds[i] for i in range(len(ds))]), ds.labels


def _full(image: np.ndarray, types=None) -> np.ndarray:
    """Every Haar-like feature of a square image, straight from scikit-image."""
    s = image.shape[0]
    return haar_like_feature(integral_image(image.astype(np.float64)), 0, 0, s, s, feature_type=types)


# -- the candidate table and the vectorised features used in fit ------------------------------------
@pytest.mark.parametrize("size", [2, 5, 8])
def test_boxes_enumerate_skimage_features_in_order(size):
    coord, ftype = haar_like_feature_coord(size, size)
    boxes = haar_feature_boxes(size)
    ours, our_types = haar_module.skimage_coords(boxes)
    assert len(boxes) == len(coord)
    assert list(our_types) == list(ftype)
    assert [list(map(tuple, c)) for c in ours] == [list(map(tuple, c)) for c in coord]


def test_feature_count_of_a_25x25_window():
    # all five types; the two edge types alone (scikit-image's example) are 101,400
    assert len(haar_feature_boxes(25)) == 190_736
    assert len(haar_feature_boxes(25, ("type-2-x", "type-2-y"))) == 101_400


def test_vectorised_features_equal_skimage():
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 256, size=(3, 9, 9)).astype(np.float64)
    values = haar_features(windows, haar_feature_boxes(9))
    for k in range(3):
        np.testing.assert_array_equal(values[k], _full(windows[k]))


# -- haar: selection and transform ------------------------------------------------------------------
def test_transform_equals_the_selected_columns_of_skimage(faces):
    images, labels = faces
    ext = create_extractor("haar", n_features=50).fit(images[:150:3], labels[:150:3])
    X = ext.transform(images[150:152])
    assert X.shape == (2, 50)
    for k, image in enumerate(images[150:152]):
        np.testing.assert_allclose(X[k], _full(image)[ext.feature_index_], rtol=1e-6)


def test_feature_types_subset_indexes_that_types_vector(faces):
    images, labels = faces
    types = ["type-4", "type-2-y"]  # any order; indices follow scikit-image's order of the types
    ext = create_extractor("haar", size=12, feature_types=types, n_features=30).fit(images[::4], labels[::4])
    assert set(ext.feature_type_) <= set(types)
    small = cv2.resize(images[1], (12, 12), interpolation=cv2.INTER_AREA)
    full = _full(small, [t for t in FEATURE_TYPES if t in types])
    np.testing.assert_allclose(ext.transform(images[1:2])[0], full[ext.feature_index_], rtol=1e-6)


def test_transform_computes_only_the_selected_features(faces, monkeypatch):
    images, labels = faces
    ext = create_extractor("haar", n_features=40, n_candidates=2000).fit(images[::5], labels[::5])
    asked = []

    def spy(int_image, r, c, width, height, feature_type=None, feature_coord=None):
        asked.append(None if feature_coord is None else len(feature_coord))
        return haar_like_feature(int_image, r, c, width, height, feature_type, feature_coord)

    monkeypatch.setattr(haar_module, "haar_like_feature", spy)
    ext.transform(images[:3])
    assert asked == [40, 40, 40]


def test_selection_is_seeded_and_ranked_by_importance(faces):
    images, labels = faces
    kw = dict(n_candidates=3000, n_features=25, n_estimators=50)
    a = create_extractor("haar", random_state=1, **kw).fit(images[::2], labels[::2])
    b = create_extractor("haar", random_state=1, **kw).fit(images[::2], labels[::2])
    c = create_extractor("haar", random_state=2, **kw).fit(images[::2], labels[::2])
    np.testing.assert_array_equal(a.feature_index_, b.feature_index_)
    assert set(a.feature_index_) != set(c.feature_index_)
    assert np.all(np.diff(a.feature_importances_) <= 0) and a.feature_importances_[0] > 0
    assert a.report_info() == {"n_candidates": 3000}


def test_selection_is_the_same_with_one_thread_or_many(faces, monkeypatch):
    """The forest's trees grow on threads; the selection must not depend on how many."""
    images, labels = faces
    kw = dict(n_candidates=3000, n_features=25, n_estimators=40, random_state=3)
    threaded = create_extractor("haar", **kw).fit(images, labels)
    made, forest = [], haar_module.ExtraTreesClassifier

    def serial(**params):
        made.append(params["n_jobs"])
        return forest(**{**params, "n_jobs": 1})

    monkeypatch.setattr(haar_module, "ExtraTreesClassifier", serial)
    one = create_extractor("haar", **kw).fit(images, labels)
    assert made == [-1]
    np.testing.assert_array_equal(threaded.feature_index_, one.feature_index_)
    np.testing.assert_array_equal(threaded.feature_importances_, one.feature_importances_)


def test_without_labels_the_most_variable_features_are_kept(faces):
    images, _ = faces
    ext = create_extractor("haar", size=10, n_candidates=None, n_features=5).fit(images[:40])
    small = np.stack([cv2.resize(im, (10, 10), interpolation=cv2.INTER_AREA) for im in images[:40]])
    variance = np.stack([_full(im) for im in small]).var(axis=0)
    np.testing.assert_allclose(variance[ext.feature_index_], np.sort(variance)[::-1][:5])


def test_fit_sees_training_images_only(faces):
    """Through the runner: changing the test images changes neither the selection nor the training rows."""
    images, labels = faces
    split = Split("s", np.arange(0, 200, 2), np.arange(1, 200, 2))
    altered = images.copy()
    altered[split.test] = 255 - altered[split.test]
    results = []
    for imgs in (images, altered):
        ext = create_extractor("haar", n_candidates=2000, n_features=30, n_estimators=50)
        ds = ArrayImageSet("faces", np.ascontiguousarray(imgs), labels, ["non-face", "face"])
        feats = _features(ext, ds, split, FeatureCache(None), {}, 1, "loky", True)
        results.append((ext.feature_index_.copy(), feats))
    (sel_a, fa), (sel_b, fb) = results
    # exact on purpose: integer-valued Haar sums and a single-threaded forest (n_jobs=1) on the same
    # training images; any difference would come from the test images
    np.testing.assert_array_equal(sel_a, sel_b)
    np.testing.assert_array_equal(fa.train, fb.train)
    assert not np.array_equal(fa.test, fb.test)


def test_few_features_separate_faces_with_a_linear_classifier(faces):
    images, labels = faces
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(100), 100 + rng.permutation(100)])
    train = np.concatenate([order[:75], order[100:175]])
    test = np.concatenate([order[75:100], order[175:]])
    ext = create_extractor("haar").fit(images[train], labels[train])
    model, _ = fit_with_c_search(LogReg(), ext.transform(images[train]), labels[train], LogReg.default_C)
    accuracy = (model.predict(ext.transform(images[test])) == labels[test]).mean()
    assert accuracy >= 0.94


def test_haar_parameter_errors():
    imgs = [np.zeros((25, 25), np.uint8)] * 2
    with pytest.raises(ConfigError, match="feature_types .*type-2-x"):
        create_extractor("haar", feature_types=["type-5"]).fit(imgs, [0, 1])
    with pytest.raises(ValueError, match="n_features"):
        create_extractor("haar", n_features=0).fit(imgs, [0, 1])
    # more features than candidates: all candidates, no error
    ext = create_extractor("haar", size=4, feature_types="type-4", n_features=100).fit(imgs, [0, 1])
    assert ext.transform(imgs).shape == (2, len(haar_feature_boxes(4, ("type-4",))))


# -- haar-cascade -----------------------------------------------------------------------------------
def test_cascade_finds_the_astronaut_face():
    astronaut = skdata.astronaut()
    ext = create_extractor("haar-cascade").fit([astronaut])
    v = ext.transform([astronaut])[0]
    assert v.shape == (10,)
    assert v[0] >= 1  # detections
    x, y, w, h = v[1:5]
    # Eileen Collins' face: about x 180-270, y 65-160 in the 512x512 photo
    assert 0.3 < x < 0.4 and 0.1 < y < 0.17 and 0.15 < w < 0.25 and abs(w - h) < 1e-6
    assert v[5] >= 4 and v[6] >= v[5] and v[7] >= v[8]


def test_cascade_grouping_matches_detect_multiscale():
    gray = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    detector = cv2.CascadeClassifier(str(available_cascades()["frontalface_default"]))
    boxes = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3)
    v = create_extractor("haar-cascade", pad=0.0, upscale=0).fit([gray]).transform([gray])[0]
    assert v[0] == len(boxes)
    largest = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
    np.testing.assert_allclose(v[1:5], largest / 512.0, atol=1e-6)


def test_flat_image_gives_zeros():
    flat = np.full((64, 64), 128, np.uint8)
    ext = create_extractor("haar-cascade").fit([flat])
    np.testing.assert_array_equal(ext.transform([flat, flat[:25, :25]]), np.zeros((2, 10), np.float32))


def test_tiny_faces_need_upscaling(faces):
    images, labels = faces
    found = {up: create_extractor("haar-cascade", upscale=up).fit(images).transform(images)[:, 0] > 0
             for up in (0, 72)}
    assert not found[0].any()  # 25x25 (37 px padded) is too small for 24 px windows at any useful scale
    assert found[72][labels == 1].mean() >= 0.9
    assert found[72][labels == 0].mean() <= 0.05


def test_cascade_names_are_checked():
    with pytest.raises(ConfigError, match="frontalface_default") as err:
        create_extractor("haar-cascade", cascade="frontal_face").fit([np.zeros((8, 8), np.uint8)])
    assert "eye" in str(err.value)
    path = available_cascades()["eye"]
    ext = create_extractor("haar-cascade", cascade=str(path)).fit([np.zeros((8, 8), np.uint8)])
    assert ext.window_size_ == (20, 20)


def test_cascade_pickles_without_the_cv2_object():
    astronaut = skdata.astronaut()[::2, ::2]
    ext = create_extractor("haar-cascade").fit([astronaut])
    before = ext.transform([astronaut])
    assert "_local" in vars(ext)
    blob = pickle.dumps(ext)
    twin = pickle.loads(blob)
    assert "_local" not in vars(twin)
    np.testing.assert_array_equal(twin.transform([astronaut]), before)
