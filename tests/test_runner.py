"""Runner: reports, caching, protocol, and resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featbench import run
from featbench.config import parse_experiment
from featbench.datasets import ArrayImageSet
from featbench.evaluation import Protocol, make_splits
from featbench.reporting import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
name = "small"
[protocol]
kind = "holdout"
repeats = 2
test_size = 0.3
[[datasets]]
name = "digits"
limit_per_class = 20
[[extractors]]
name = "pixels"
size = 8
[[extractors]]
name = "hog"
size = 16
cell_size = 4
block_size = 8
block_stride = 4
[[classifiers]]
name = "logreg"
C = [0.1, 1.0]
[[classifiers]]
name = "rbf-svm"
C = [10.0]
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))


def _write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(text))
    return cfg


def test_run_writes_every_report(tmp_path):
    result = run(_write(tmp_path, SMALL), tmp_path / "out")
    out = tmp_path / "out"
    for name in ("results.csv", "summary.csv", "report.md", "run.json",
                 "plots/digits_accuracy_vs_time.png", "plots/digits_confusion.png"):
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 * 2 * 2  # extractors × classifiers × splits
    assert set(results["status"]) == {"ok"}
    assert results["n_train"].tolist() == [140] * 8 and results["n_test"].tolist() == [60] * 8
    hog = results[results["extractor"].str.startswith("hog")]
    assert (hog["dim"] == 3 * 3 * 4 * 9).all()  # (16 - 8) / 4 + 1 = 3 blocks a side
    assert (results["accuracy"] > 0.6).all()
    for col in ("extract_ms_per_image", "images_per_s", "classifier_fit_s", "predict_ms_per_image", "task_peak_rss_mb",
                "extract_peak_rss_mb", "task_s"):
        assert (results[col] > 0).all(), col
    # the best C is one of the grid, chosen on the training part
    assert set(results[results["classifier"] == "logreg"]["C"]) <= {0.1, 1.0}
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and (summary["splits"] == 2).all()
    first = results[(results["extractor"] == "pixels(size=8)") & (results["classifier"] == "logreg")]
    np.testing.assert_allclose(summary.loc[0, "accuracy_mean"], first["accuracy"].mean(), rtol=1e-5)
    info = json.loads((out / "run.json").read_text())
    for key in ("config", "versions", "cpu", "cores", "git_commit", "started", "finished"):
        assert key in info
    assert info["cells"] == {"total": 8, "computed": 8, "reused": 0}
    stages = info["stages"]
    assert stages["extraction_wall_s"] > 0 and stages["cells_wall_s"] > 0
    np.testing.assert_allclose(stages["classifier_fit_s"], results["classifier_fit_s"].sum(), atol=0.01)
    assert stages["task_s"] >= stages["classifier_fit_s"] - 0.01
    # the wall time with a fit running: at least the longest cell's, at most their sum and the cells' stage
    assert results["classifier_fit_s"].max() - 0.01 <= stages["classifier_fit_wall_s"]
    assert stages["classifier_fit_wall_s"] <= min(stages["classifier_fit_s"], stages["cells_wall_s"]) + 0.01
    assert "classifier_fit_spans" not in results  # the spans go into the stage total, not the records
    by_task = stages["classifier_fit_wall_s_by_task"]
    assert set(by_task) == set(results.loc[results["classifier_fit_s"] > 0, "task"])
    for task, wall in by_task.items():  # each task's merged time lies between its longest cell and the whole
        fits = results.loc[results["task"] == task, "classifier_fit_s"]
        assert fits.max() - 0.01 <= wall <= min(fits.sum(), stages["classifier_fit_wall_s"]) + 0.01
    # every fit of every search counted (3 inner folds × grid + the refit; no search for one value)
    grids = results["C_grid"].map(lambda g: len(json.loads(g)))
    assert (results["n_fits"] == np.where(grids > 1, 3 * grids + 1, 1)).all()
    assert (results["not_converged"] == 0).all()
    assert set(json.loads(results.loc[0, "search_scores"])) == {"0.1", "1.0"}
    report = (out / "report.md").read_text()
    assert "## digits" in report and "Confusion matrix" in report
    assert f"Non-converged fits: none of {int(results['n_fits'].sum())}" in report
    # sorted by accuracy within the dataset
    table = [ln for ln in report.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    accs = [float(ln.split("|")[5].split("±")[0].strip(" *")) for ln in table]  # bold: tied with the best
    assert accs == sorted(accs, reverse=True) and len(accs) == 4
    assert result.computed == 8


def test_second_run_recomputes_nothing_and_uses_feature_cache(tmp_path):
    cfg = _write(tmp_path, SMALL)
    run(cfg, tmp_path / "out")
    again = run(cfg, tmp_path / "out")
    assert (again.computed, again.reused) == (0, 8)
    # a new output folder: cells are recomputed, features come from the cache
    fresh = run(cfg, tmp_path / "out2")
    assert fresh.computed == 8
    assert all(r["features_from_cache"] for r in fresh.records)
    a = pd.read_csv(tmp_path / "out" / "results.csv").drop(columns=TIMING_COLUMNS)
    b = pd.read_csv(tmp_path / "out2" / "results.csv").drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(a, b)


def test_official_split_used_when_asked():
    images = ArrayImageSet("toy", np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2, ["a", "b"],
                           official_split=(np.arange(6), np.arange(6, 10)))
    (split,) = make_splits(images.labels, Protocol(kind="official"), images.official_split)
    assert split.train.tolist() == list(range(6)) and split.test.tolist() == [6, 7, 8, 9]


def test_holdout_is_stratified_and_deterministic():
    labels = np.repeat(np.arange(3), 20)
    a = make_splits(labels, Protocol(kind="holdout", repeats=3, test_size=0.25, seed=1))
    b = make_splits(labels, Protocol(kind="holdout", repeats=3, test_size=0.25, seed=1))
    assert len(a) == 3
    for s, t in zip(a, b):
        assert np.array_equal(s.train, t.train) and np.array_equal(s.test, t.test)
        assert not set(s.train) & set(s.test)
        assert np.bincount(labels[s.test]).tolist() == [5, 5, 5]
    assert not np.array_equal(a[0].test, a[1].test)
    folds = make_splits(labels, Protocol(kind="kfold", folds=4, repeats=1))
    assert len(folds) == 4
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(60))


def test_failed_extractor_is_recorded_and_run_goes_on(tmp_path):
    from featbench import register_extractor
    from featbench.extractors import Extractor, ExtractorSpec
    from featbench.registry import EXTRACTORS

    @register_extractor("test-always-fails")
    class Fails(Extractor):
        spec = ExtractorSpec(family="classical", color="gray", description="fails", references=("-",))

        def _transform_one(self, image):
            raise RuntimeError("boom at pixel 3")

    try:
        cfg = _write(tmp_path, SMALL.replace('name = "pixels"', 'name = "test-always-fails"').replace("size = 8\n", "", 1))
        result = run(cfg, tmp_path / "out")
    finally:
        EXTRACTORS.unregister("test-always-fails")
    statuses = {r["extractor"]: r["status"] for r in result.records}
    assert statuses["test-always-fails"] == "failed: RuntimeError: boom at pixel 3"
    assert statuses["hog(block_size=8, block_stride=4, cell_size=4, size=16)"] == "ok"
    assert "failed: RuntimeError: boom at pixel 3" in (tmp_path / "out" / "report.md").read_text()


KILLER_PLUGIN = '''
import os
import signal
from pathlib import Path

from sklearn.linear_model import LogisticRegression

from featbench import register_classifier
from featbench.classifiers import LogReg


class KillingLogisticRegression(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        if os.environ.get("FEATBENCH_TEST_KILL") == "1":  # worker processes started earlier do not have it
            counter = Path(os.environ["FEATBENCH_TEST_FIT_COUNTER"])
            n = int(counter.read_text()) + 1 if counter.exists() else 1
            counter.write_text(str(n))
            if n == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(X, y, sample_weight)


@register_classifier("test-killer")
class Killer(LogReg):
    """Logistic regression; the process kills itself (SIGKILL) at its third fit (for the resume test)."""
    row_space = False

    def estimator(self, random_state):
        return KillingLogisticRegression(max_iter=2000, random_state=random_state)
'''


def test_killed_run_resumes_only_unfinished_cells(tmp_path, monkeypatch):
    """A run killed (SIGKILL, no clean-up) in the third of its 8 cells (4 splits × 2 classifiers, run one at a
    time in one process) has written exactly the 2 cells of each of the first two splits; the same command
    then computes only the other 4 (on worker processes, which import the plugin classifier themselves) and
    writes the same tables as an uninterrupted run. The kill comes from inside, at a fixed point: nothing
    depends on timing."""
    (tmp_path / "killer.py").write_text(KILLER_PLUGIN)
    cfg = _write(tmp_path, """
        name = "resume"
        plugins = ["killer.py"]
        [protocol]
        repeats = 4
        test_size = 0.3
        [[datasets]]
        name = "digits"
        limit_per_class = 10
        [[extractors]]
        name = "pixels"
        size = 8
        [[classifiers]]
        name = "test-killer"
        C = [1.0]
        [[classifiers]]
        name = "linear-svm"
        C = [0.1]
    """)
    out = tmp_path / "out"
    cells = out / "cells"
    counter = tmp_path / "fits"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATBENCH_TEST_FIT_COUNTER": str(counter),
           "FEATBENCH_TEST_KILL": "1"}
    # stderr to a file, not a pipe: the killed run's worker processes would hold a pipe open after it died
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "featbench", "run", str(cfg), "--out", str(out), "--n-jobs", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
    done = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert len(done) == 4, sorted(done)
    assert {json.loads(p.read_text())["split"] for p in cells.glob("*.json")} == {"holdout-0", "holdout-1"}
    assert not list(cells.glob(".*.tmp")), "a killed run leaves no half-written cell"
    assert not (out / "results.csv").exists()

    monkeypatch.delenv("FEATBENCH_TEST_KILL", raising=False)
    resumed = run(cfg, out, n_jobs=2)
    assert resumed.reused == 4
    assert resumed.computed == 4
    assert {r["status"] for r in resumed.records} == {"ok"}
    assert {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json") if p.name in done} == done

    uninterrupted = run(cfg, tmp_path / "out-full", skip_existing=False)
    assert uninterrupted.computed == 8
    a = pd.read_csv(out / "results.csv").drop(columns=TIMING_COLUMNS)
    b = pd.read_csv(tmp_path / "out-full" / "results.csv").drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    sa = pd.read_csv(out / "summary.csv")
    sb = pd.read_csv(tmp_path / "out-full" / "summary.csv")
    cols = ["dataset", "extractor", "classifier", "accuracy_mean", "accuracy_std", "f1_macro_mean", "C_chosen"]
    pd.testing.assert_frame_equal(sa[cols], sb[cols])


def test_parse_experiment_rejects_duplicate_labels():
    from featbench.errors import ConfigError

    data = {"datasets": [{"name": "digits"}], "extractors": [{"name": "hog"}, {"name": "hog"}],
            "classifiers": [{"name": "logreg"}]}
    with pytest.raises(ConfigError, match="same label 'hog'"):
        parse_experiment(data)


def test_parallel_transform_equals_serial_and_ships_only_the_chunk(monkeypatch):
    import pickle

    from featbench import create_extractor, features, load_dataset
    from featbench.features import MIN_PARALLEL_IMAGES, transform_parallel

    monkeypatch.setattr(features, "MIN_PARALLEL_SECONDS", 0.0)  # parallel even for a cheap extractor

    ds = load_dataset("digits", limit_per_class=40)
    assert len(ds) >= MIN_PARALLEL_IMAGES  # the parallel path is the one tested
    hog = create_extractor("hog", size=16, cell_size=4, block_size=8, block_stride=4).fit(ds)
    np.testing.assert_array_equal(transform_parallel(hog, ds, n_jobs=2), hog.transform(ds))
    chunk = ds.subset(np.arange(10))
    assert len(pickle.dumps(chunk)) < len(pickle.dumps(ds)) / 10
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(chunk))[3], ds[3])


def test_opencv_digits_tutorial_split(featbench_data, tmp_path, monkeypatch):
    """Acceptance on OpenCV's digits sheet, tutorial split (2,500 / 2,500; tutorial: about 94 %):
    HOG + RBF SVM >= 97 %, the best classical row >= 98.5 %, the CNN trained on the split >= 97.5 %."""
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    result = run(ROOT / "experiments" / "opencv_digits.toml", tmp_path / "out")
    rows = {(r["extractor"], r["classifier"]): r for r in result.records}
    assert all(r["status"] == "ok" for r in rows.values()), [r["status"] for r in rows.values()]
    assert all((r["n_train"], r["n_test"]) == (2500, 2500) for r in rows.values())
    assert rows[("hog-deskew", "rbf-svm")]["accuracy"] >= 0.97, rows[("hog-deskew", "rbf-svm")]["accuracy"]
    classical = max(r["accuracy"] for (e, _), r in rows.items() if not e.startswith("cnn"))
    assert classical >= 0.985, classical
    cnn = max(r["accuracy"] for (e, _), r in rows.items() if e.startswith("cnn"))
    assert cnn >= 0.975, cnn


def test_report_command_rebuilds_reports_from_cells(tmp_path):
    from featbench.cli import main

    run(_write(tmp_path, SMALL), tmp_path / "out")
    out = tmp_path / "out"
    before = {n: (out / n).read_text() for n in ("report.md", "results.csv", "summary.csv")}
    for n in before:
        (out / n).unlink()
    assert main(["report", str(out)]) == 0
    assert {n: (out / n).read_text() for n in before} == before


def test_threading_backend_gives_the_same_results(tmp_path, monkeypatch):
    from featbench import features as runner  # the feature stage's parallel settings
    from featbench.features import MIN_PARALLEL_IMAGES

    text = SMALL.replace("limit_per_class = 20", "limit_per_class = 30")
    assert 300 >= MIN_PARALLEL_IMAGES  # extraction really goes through the parallel path
    monkeypatch.setattr(runner, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache-threads"))
    threaded = run(_write(tmp_path, text + '\n[run]\nbackend = "threading"\nn_jobs = 2\n'), tmp_path / "t")
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache-serial"))
    serial = run(_write(tmp_path, text), tmp_path / "s", n_jobs=1)
    assert not any(r["features_from_cache"] for r in threaded.records + serial.records)
    a = pd.read_csv(tmp_path / "t" / "results.csv").drop(columns=TIMING_COLUMNS)
    b = pd.read_csv(tmp_path / "s" / "results.csv").drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((tmp_path / "t" / "run.json").read_text())["backend"] == "threading"


def test_classifier_scale_none_keeps_the_features_scale(tmp_path):
    from featbench.classifiers import LogReg, fit_with_c_search

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)) * [1.0, 10.0, 100.0, 1000.0]
    y = (X[:, 0] > 0).astype(int)
    standard, _ = fit_with_c_search(LogReg(), X, y, [1.0])
    unscaled, _ = fit_with_c_search(LogReg(), X, y, [1.0], scale="none")
    assert standard.named_steps["scale"].scale_ is not None
    assert unscaled.named_steps["scale"] == "passthrough"
    # Same data, different geometry: the two models must not coincide.
    assert not np.allclose(standard.decision_function(X), unscaled.decision_function(X))

    text = SMALL.replace('name = "logreg"', 'name = "logreg"\nlabel = "logreg-unscaled"\nscale = "none"', 1)
    result = run(_write(tmp_path, text), tmp_path / "out")
    assert {r["classifier"] for r in result.records} >= {"logreg-unscaled"}
    plain = run(_write(tmp_path, SMALL), tmp_path / "plain")
    ids = {r["cell_id"] for r in result.records if r["classifier"] == "logreg-unscaled"}
    assert ids.isdisjoint(r["cell_id"] for r in plain.records), "scale must be part of the cell's identity"


def test_parallel_only_when_the_probe_says_it_pays(monkeypatch):
    """The decision depends on the probe's measured time only: a fake clock makes it deterministic."""
    from joblib import parallel_config

    from featbench import create_extractor, load_dataset
    from featbench import features as runner

    class Clock:  # each reading advances by ``step`` seconds: the probe of 16 images "takes" one step
        def __init__(self, step):
            self.step, self.now = step, 0.0

        def perf_counter(self):
            self.now += self.step
            return self.now

    calls = []
    real = runner.Parallel
    monkeypatch.setattr(runner, "Parallel", lambda *a, **k: (calls.append(k), real(*a, **k))[1])
    ds = load_dataset("digits", limit_per_class=30)
    hog = create_extractor("hog", size=16, cell_size=4, block_size=8, block_stride=4).fit(ds)
    serial = hog.transform(ds)
    rest = len(ds) - runner.PROBE_IMAGES
    with parallel_config(backend="threading"):
        # 16 images in 1e-3 s: the rest would take rest/16 ms serially, far below MIN_PARALLEL_SECONDS
        monkeypatch.setattr(runner, "time", Clock(1e-3))
        cheap = runner.transform_parallel(hog, ds, n_jobs=2)
        assert calls == []
        # 16 images in 1 s: the rest would take rest/16 s >= MIN_PARALLEL_SECONDS: workers pay
        assert rest / runner.PROBE_IMAGES >= runner.MIN_PARALLEL_SECONDS
        monkeypatch.setattr(runner, "time", Clock(1.0))
        forced = runner.transform_parallel(hog, ds, n_jobs=2)
        assert len(calls) == 1
    np.testing.assert_array_equal(cheap, serial)
    np.testing.assert_array_equal(forced, serial)


def test_covered_seconds_is_the_length_of_the_union():
    from featbench.runner import covered_seconds

    assert covered_seconds([]) == 0.0
    assert covered_seconds([(0, 2), (1, 3), (5, 6)]) == 4.0  # [0, 3] and [5, 6]
    assert covered_seconds([(5, 6), (0, 10)]) == 10.0  # one inside another, in any order
    assert covered_seconds([(0, 1), (1, 2)]) == 2.0
