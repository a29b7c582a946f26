"""Issue 13: the ``learning-curve`` task — k-shot sets drawn from the training part only, the extractor fitted
and the classifier's C searched on the k-shot images only (never on images outside them, the leak of
CLIP_benchmark issue #125), deterministic draws, capped sizes, bad parameters, and the report's crossovers."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from featbench import register_extractor, run
from featbench.classifiers import Classifier
from featbench.config import load_experiment
from featbench.datasets import load_dataset
from featbench.errors import ConfigError
from featbench.evaluation import make_splits
from featbench.extractors import Extractor, ExtractorSpec
from featbench.registry import CLASSIFIERS, EXTRACTORS, register_classifier
from featbench.tasks.learning_curve import LearningCurve, crossover_lines, crossovers, kshot_indices

# -- plugins that record what they were fitted on ----------------------------------------------------------
#: Dataset storage indices of the images of every ``fit`` of the extractor, in call order.
EXTRACTOR_FITS: list[np.ndarray] = []
#: (storage indices of the rows, C) of every ``fit`` of the classifier, in call order.
CLASSIFIER_FITS: list[tuple[np.ndarray, float]] = []
#: The recording classifier's own default C: outside its grid, so a fit that uses it is recognisable.
DEFAULT_C = 0.5
GRID = (0.1, 1.0)


class IdentityPixels(Extractor):
    """Feature 0: the image's index in the dataset's storage (what the task cannot see, so a row says which
    image it is); then the 64 pixels. ``fit`` records the images it is given. The index is read from the image
    set's private ``_index``: only a test may do that."""

    spec = ExtractorSpec(family="classical", color="gray", description="records its fits", references=("-",),
                         fitted=True)

    def fit(self, images, y=None):
        EXTRACTOR_FITS.append(np.asarray(images._index, dtype=np.int64).copy())
        self.fitted_ = True
        return self

    def transform(self, images):
        ids = np.asarray(images._index, dtype=np.float32)[:, None]
        pixels = np.stack([np.asarray(im, dtype=np.float32).ravel()[:64] for im in images])
        return np.ascontiguousarray(np.hstack([ids, pixels]), dtype=np.float32)


class RecordingCentroid(ClassifierMixin, BaseEstimator):
    """Nearest class mean (Euclidean) on the pixels (columns 1:); ``fit`` records the rows' image indices and
    its C."""

    def __init__(self, C: float = DEFAULT_C) -> None:
        self.C = C

    def fit(self, X, y):
        CLASSIFIER_FITS.append((np.asarray(X)[:, 0].astype(np.int64), float(self.C)))
        self.classes_ = np.unique(y)
        self.means_ = np.stack([np.asarray(X)[y == c, 1:].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((np.asarray(X)[:, None, 1:] - self.means_[None]) ** 2).sum(axis=-1)
        return self.classes_[d.argmin(axis=1)]


class Recording(Classifier):
    description = "nearest centroid that records its fits (test)"
    default_C = GRID
    default_scale = "none"  # the rows reach the estimator as they are: column 0 stays the image's index

    def estimator(self, random_state):
        return RecordingCentroid()


@pytest.fixture(autouse=True)
def _plugins(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    EXTRACTOR_FITS.clear()
    CLASSIFIER_FITS.clear()
    register_extractor("test-identity-pixels")(IdentityPixels)
    register_classifier("test-recording")(Recording)
    yield
    EXTRACTORS.unregister("test-identity-pixels")
    CLASSIFIERS.unregister("test-recording")


EXP = """
name = "lc"
[run]
seed = 7
[protocol]
repeats = 2
test_size = 0.3
seed = 3
[[datasets]]
name = "digits"
limit_per_class = 12
[[extractors]]
name = "{extractor}"
{params}
[[classifiers]]
name = "{classifier}"
[[tasks]]
name = "learning-curve"
{task}
"""


def _config(tmp_path, extractor="test-identity-pixels", params="", classifier="test-recording",
            task='sizes = [1, 2, 5, 20, "all"]\ntries = 2'):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(EXP.format(extractor=extractor, params=params, classifier=classifier, task=task)))
    return cfg


# -- the leak test -------------------------------------------------------------------------------------------
def test_no_image_outside_the_kshot_set_reaches_the_extractor_fit_or_the_C_search(tmp_path):
    cfg = _config(tmp_path)
    result = run(cfg, tmp_path / "out", n_jobs=1)
    assert {r["status"] for r in result.records} == {"ok"}
    exp = load_experiment(cfg)
    images = load_dataset("digits", limit_per_class=12)
    storage = np.asarray(images._index)
    splits = make_splits(images.labels, exp.datasets[0].protocol, images.official_split)
    assert len(splits) == 2

    # what each draw must be: train[kshot_indices(...)] for sizes 1, 2, 5 (8 or 9 training images per class,
    # so 20 is capped to the whole training part) and the whole training part for 20 and "all"
    kshots, wholes, tests = [], [], []
    for split in splits:
        y_train = images.labels[split.train]
        assert 5 < np.bincount(y_train).min() and np.bincount(y_train).max() < 20  # 20 per class is capped
        wholes.append(frozenset(storage[split.train].tolist()))
        tests.append(frozenset(storage[split.test].tolist()))
        for size in (1, 2, 5):
            for attempt in range(2):
                idx = kshot_indices(y_train, size, attempt, exp.run.seed)  # the run's seed
                assert (np.bincount(y_train[idx]) == size).all()  # stratified: `size` of every class
                kshots.append((size, frozenset(storage[split.train[idx]].tolist())))

    # the extractor: fitted on each split's training part (its own features) and on each k-shot set, once
    # each, never on anything else
    fits = Counter(frozenset(f.tolist()) for f in EXTRACTOR_FITS)
    assert fits == Counter(wholes) + Counter(k for _, k in kshots)

    # the classifier: run in order, one cell at a time; a draw's fits are its inner-CV fits, then the refit
    # on exactly the draw's training images
    expected_draws = Counter(k for _, k in kshots) + Counter(w for w in wholes for _ in range(2))  # 20 and "all"
    size_of = {k: s for s, k in kshots}
    refits: list[frozenset] = []
    pending: list[tuple[frozenset, float]] = []
    for ids, C in CLASSIFIER_FITS:
        rows = frozenset(ids.tolist())
        assert len(rows) == len(ids)
        # inside one split's training part, none of that split's test images
        assert any(rows <= w and not rows & t for w, t in zip(wholes, tests))
        candidates = [k for k in expected_draws if rows == k]
        if candidates and (not pending or all(r < rows for r, _ in pending)):
            draw = candidates[0]
            refits.append(draw)
            if size_of.get(draw) == 1:  # one image per class: nothing to fold, the estimator's default
                assert pending == [] and C == DEFAULT_C
            else:  # 2-fold (2 per class) or 3-fold (5 and more) search over the grid, inside the draw
                folds = min(3, size_of.get(draw, 8))
                assert len(pending) == folds * len(GRID)
                assert all(r < draw for r, _ in pending)  # strictly inside the k-shot set
                assert sorted({c for _, c in pending}) == list(GRID) and C in GRID
            pending = []
        else:
            pending.append((rows, C))
    assert pending == []
    assert Counter(refits) == expected_draws

    rec = result.records[0]
    curve = json.loads(rec["curve"])
    assert curve["1"]["chosen_by"] == "default" and curve["1"]["C"] == [DEFAULT_C, DEFAULT_C]
    assert curve["5"]["chosen_by"] == "inner-cv" and len(curve["5"]["accuracy"]) == 2
    # capped: 20 per class is the whole training part, one draw, flagged; "all" is the same set
    assert curve["20"]["capped"] and curve["20"]["per_class_max"] == 9 and len(curve["20"]["accuracy"]) == 1
    assert not curve["all"]["capped"] and curve["all"]["n_train"] == 84
    assert rec["accuracy@20"] == pytest.approx(rec["accuracy@all"], abs=0)  # same images, same fit
    assert rec["accuracy"] == rec["accuracy@all"]


def test_a_fitted_extractor_is_refitted_on_the_kshot_set_and_one_that_learns_nothing_is_sliced(tmp_path):
    """PCA fitted on a 2-shot set gives other test features than the split's PCA; pixels give the same."""
    seen = {}
    original = LearningCurve.run

    def spy(self, cell, data):
        seen[(data.split_id, self.params["sizes"][0])] = data
        return original(self, cell, data)

    LearningCurve.run = spy
    try:
        for extractor, params in (("pca", "size = 8\nn_components = 5"), ("pixels", "size = 8")):
            seen.clear()
            cfg = _config(tmp_path, extractor=extractor, params=params, classifier="logreg",
                          task="sizes = [2]\ntries = 1")
            result = run(cfg, tmp_path / f"out-{extractor}", n_jobs=1)
            assert {r["status"] for r in result.records} == {"ok"}
            data = next(iter(seen.values()))
            X = data.extra["2-shot/0"]
            assert X.shape == (20 + len(data.y_test), data.train.shape[1])
            if extractor == "pixels":  # rows of the split's own features
                idx = kshot_indices(data.y_train, 2, 0, data.seed)
                np.testing.assert_array_equal(X[:20], data.train[idx])
                np.testing.assert_array_equal(X[20:], data.test)
            else:  # 5 components fitted on 20 images differ from those fitted on 80
                assert not np.allclose(X[20:], data.test, atol=1e-3)
    finally:
        LearningCurve.run = original


# -- the draws ----------------------------------------------------------------------------------------------
def test_kshot_draws_are_deterministic_stratified_and_capped():
    y = np.repeat(np.arange(4), [10, 10, 3, 7])
    a = kshot_indices(y, 5, 0, seed=11)
    np.testing.assert_array_equal(a, kshot_indices(y, 5, 0, seed=11))  # same seed, size and try: same set
    assert list(np.bincount(y[a])) == [5, 5, 3, 5]  # a class with 3 images gives its 3 (capped)
    assert len(set(a.tolist())) == len(a) and (np.diff(a) > 0).all()
    others = [kshot_indices(y, 5, t, seed=s) for t, s in ((1, 11), (0, 12))]
    assert all(not np.array_equal(a, o) for o in others)  # another try or seed: another draw
    assert len(kshot_indices(y, 100, 0, seed=0)) == len(y)  # capped everywhere: the whole training part


# -- parameters ---------------------------------------------------------------------------------------------
def test_params_defaults_and_order():
    assert LearningCurve.check_params({}) == {"sizes": [1, 2, 5, 10, 20, 50, "all"], "tries": 5, "retrieval": False}
    assert LearningCurve.check_params({"sizes": ["all", 10, 3], "tries": 2, "retrieval": True}) == \
        {"sizes": [3, 10, "all"], "tries": 2, "retrieval": True}


@pytest.mark.parametrize("params, match", [
    ({"sizes": []}, r"sizes must be a non-empty list .* got \[\]"),
    ({"sizes": [0, 5]}, "sizes must be .*positive integers"),
    ({"sizes": [2.5]}, r"got \[2.5\]"),
    ({"sizes": [True]}, r"got \[True\]"),
    ({"sizes": ["al"]}, r"and/or \"all\", got \['al'\]"),
    ({"sizes": 5}, "got 5"),
    ({"sizes": [5, 5]}, "must not repeat"),
    ({"tries": 0}, r"tries must be an integer in \[1, 1000\]"),
    ({"tries": "3"}, "tries must be an integer"),
    ({"retrieval": "yes"}, "retrieval must be true or false, got 'yes'"),
    ({"size": [1]}, "unknown key 'size' for task 'learning-curve'; accepted: sizes, tries, retrieval"),
])
def test_bad_params_name_the_key_and_what_is_accepted(params, match):
    with pytest.raises(ConfigError, match=match):
        LearningCurve.check_params(params)


def test_bad_params_in_an_experiment_file_exit_2_with_one_line(tmp_path, capsys):
    from featbench.cli import main

    cfg = _config(tmp_path, extractor="pixels", params="size = 8", classifier="logreg",
                  task='sizes = [1, "half"]')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "learning-curve" in err and "'half'" in err


# -- report ---------------------------------------------------------------------------------------------
def test_crossovers_are_interpolated_in_log_x():
    x = np.array([1.0, 10.0, 100.0])
    # a - b = +0.1, -0.1, -0.2: they cross halfway between 1 and 10 in log x, i.e. at sqrt(10)
    assert crossovers(x, [0.5, 0.6, 0.7], [0.4, 0.7, 0.9]) == [(pytest.approx(10 ** 0.5, rel=1e-12), 1)]
    assert crossovers(x, [0.5, 0.6, 0.7], [0.4, 0.5, 0.6]) == []  # a ahead everywhere
    # equal at 10, a behind before and ahead after: one crossing, at 10
    assert crossovers(x, [0.3, 0.6, 0.9], [0.4, 0.6, 0.8]) == [(pytest.approx(10.0, rel=1e-12), -1)]


def test_crossover_lines_say_who_wins_below_and_above():
    def curve(acc, std=0.01):
        return pd.DataFrame({"size": ["1", "10", "all"], "per_class": [1.0, 10.0, 100.0], "accuracy_mean": acc,
                             "accuracy_std": [std] * 3})

    lines = crossover_lines({"hog": curve([0.5, 0.6, 0.7]), "cnn": curve([0.4, 0.7, 0.9]),
                             "pixels": curve([0.1, 0.2, 0.3])})
    said = [line for line in lines if line.startswith("- ")]
    assert said == ["- `hog` beats `cnn` below ≈ 3.16 images per class; `cnn` is ahead above. Measured (`hog` vs "
                    "`cnn`): 1/class 0.500 ± 0.010 vs 0.400 ± 0.010; 10/class 0.600 ± 0.010 vs 0.700 ± 0.010."]
    assert lines[-1] == "The other 2 of the 3 pairs do not cross: their order is the same at every size."
    # gaps smaller than the draws' spread are said to be so
    noisy = crossover_lines({"hog": curve([0.5, 0.6, 0.7], 0.2), "cnn": curve([0.4, 0.7, 0.9], 0.2)})
    assert noisy[2].endswith("gaps smaller than the spread over draws: where exactly they cross is not pinned down.")
    # two crossings: who is ahead in each stretch
    twice = crossover_lines({"a": curve([0.5, 0.6, 0.9]), "b": curve([0.4, 0.7, 0.8])})
    assert twice[2].startswith("- `a` and `b` cross 2 times: `a` ahead below ≈ 3.16, `b` between ≈ 3.16 and "
                               "≈ 31.6, `a` above ≈ 31.6 images per class.")
    assert crossover_lines({"a": curve([0.5, 0.6, 0.7]), "b": curve([0.1, 0.2, 0.3])})[0].startswith(
        "Crossovers: none")


def test_report_section_has_the_table_plot_and_draw_counts(tmp_path):
    cfg = _config(tmp_path, extractor="pixels", params="size = 8", classifier="logreg",
                  task='sizes = [1, 5, "all"]\ntries = 3\nretrieval = true')
    result = run(cfg, tmp_path / "out", n_jobs=1)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| extractor | weights | classifier | 1/class | 5/class | all/class |" in report
    assert "Draws per size (splits × tries): 1: 6, 5: 6, all: 2." in report
    assert "![digits: learning curves](plots/digits_learning-curve.png)" in report
    assert (tmp_path / "out" / "plots" / "digits_learning-curve.png").stat().st_size > 0
    assert "Retrieval mAP of the test images against the k-shot images" in report
    # the table's 1/class cell is the mean ± std (ddof 1) of the six draws in the records
    draws = [a for r in result.records for a in json.loads(r["curve"])["1"]["accuracy"]]
    assert f"{np.mean(draws):.3f} ± {np.std(draws, ddof=1):.3f}" in report
    assert all(0 <= r["mAP@1"] <= 1 for r in result.records)
