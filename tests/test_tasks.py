"""Issue 9: the task stage — plugin tasks, classification unchanged, retrieval through the runner, the kNN
classifier, and significance marks in the report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from featbench import run
from featbench.classifiers import WeightedKNN, WeightedKNNClassifier, fit_with_search
from featbench.cli import main
from featbench.config import parse_experiment, tomllib  # tomllib, or tomli before Python 3.11
from featbench.errors import ConfigError
from featbench.evaluation.retrieval import retrieval_scores
from featbench.reporting import write_reports

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
name = "small"
[protocol]
repeats = 2
test_size = 0.3
[[datasets]]
name = "digits"
limit_per_class = 20
[[extractors]]
name = "pixels"
size = 8
[[classifiers]]
name = "logreg"
C = [0.1, 1.0]
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))


def _write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(text))
    return cfg


# -- a task shipped as a real entry point ------------------------------------------------------
CENTROID = '''
import numpy as np
from featbench.tasks import Task


class NearestCentroid(Task):
    """Accuracy of the nearest class mean.

    References
    ----------
    .. [1] Tibshirani et al. 2002 (nearest shrunken centroids), without the shrinking.
    """
    description = "nearest class mean (plugin)"
    metrics = ("accuracy",)

    def run(self, cell, data):
        means = np.stack([data.train[data.y_train == c].mean(0) for c in range(data.n_classes)])
        pred = np.argmin(((data.test[:, None] - means[None]) ** 2).sum(-1), axis=1)
        return {"accuracy": float((pred == data.y_test).mean())}
'''


def test_entry_point_task_is_listed_and_runs_and_a_broken_one_breaks_nothing(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fb_centroid.py").write_text(CENTROID)
    info = site / "fb_centroid-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fb_centroid\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[featbench.tasks]\ncentroid = fb_centroid:NearestCentroid\n"
                                           "broken-task = fb_no_such_module:Task\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "FEATBENCH_CACHE": str(tmp_path / "cache")}
    listed = subprocess.run([sys.executable, "-m", "featbench", "list", "tasks"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = {ln.split()[0]: ln for ln in listed.stdout.splitlines() if ln.strip()}
    assert "nearest class mean (plugin)" in lines["centroid"] and "available" in lines["centroid"]
    assert "unavailable" in lines["broken-task"] and "fb_no_such_module" in lines["broken-task"]
    assert "available" in lines["classification"] and "available" in lines["retrieval"]

    cfg = _write(tmp_path, SMALL.replace("[[classifiers]]", '[[tasks]]\nname = "centroid"\n[[tasks]]\n'
                                         'name = "classification"\n[[classifiers]]'))
    ran = subprocess.run([sys.executable, "-m", "featbench", "run", str(cfg), "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(set(res["task"])) == ["centroid", "classification"]
    assert (res["status"] == "ok").all()
    centroid = res[res["task"] == "centroid"]
    assert len(centroid) == 2 and (centroid["accuracy"] > 0.5).all()  # chance is 0.1
    assert "### centroid" in (tmp_path / "out" / "report.md").read_text()


# -- classification as before ----------------------------------------------------------------------------
def test_experiments_without_tasks_keep_their_cells(tmp_path):
    """An experiment file written before tasks runs one classification task, and its cells keep the ids
    (and file names) that records written before tasks existed have: the same hash payload."""
    from featbench import load_dataset
    from featbench.evaluation import make_splits
    from featbench.version import __version__

    exp = parse_experiment({"name": "x", "protocol": {"repeats": 2, "test_size": 0.3},
                            "datasets": [{"name": "digits", "limit_per_class": 20}],
                            "extractors": [{"name": "pixels", "size": 8}],
                            "classifiers": [{"name": "logreg", "C": [0.1, 1.0]},
                                            {"name": "rbf-svm", "label": "rbf-raw", "scale": "none"}]})
    assert [t.name for t in exp.tasks] == ["classification"]
    result = run(exp, tmp_path / "out")
    images = load_dataset("digits", limit_per_class=20)
    splits = make_splits(images.labels, exp.datasets[0].protocol, None)
    expected = []
    for split in splits:
        for clf, payload in (("logreg", ["logreg", [0.1, 1.0]]), ("rbf-raw", ["rbf-svm", [1.0, 10.0, 100.0], "none"])):
            old = {"featbench": __version__, "dataset": ["digits", {"limit_per_class": 20}, images.fingerprint],
                   "extractor": ["pixels", {"size": 8}], "classifier": payload, "split": split.digest,
                   "inner_folds": 3, "seed": 0}  # the payload of the cell ids written before tasks existed
            cid = hashlib.sha256(json.dumps(old, sort_keys=True, default=repr).encode()).hexdigest()
            expected.append(f"digits__pixels-size-8__{clf}__{split.id}__{cid[:10]}.json")
    assert sorted(p.name for p in (tmp_path / "out" / "cells").glob("*.json")) == sorted(expected)
    assert {r["task"] for r in result.records} == {"classification"}


# -- retrieval through the runner -----------------------------------------------------------------------------
def test_retrieval_task_records_equal_the_metrics_of_the_same_features(tmp_path):
    from featbench import create_extractor, load_dataset
    from featbench.evaluation import make_splits

    cfg = _write(tmp_path, SMALL + '[[tasks]]\nname = "classification"\n[[tasks]]\nname = "retrieval"\n'
                                   '[[tasks]]\nname = "retrieval"\nlabel = "retrieval-whitened"\nwhiten = true\n')
    result = run(cfg, tmp_path / "out")
    recs = [r for r in result.records if r["task_name"] == "retrieval"]
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    images = load_dataset("digits", limit_per_class=20)
    X = create_extractor("pixels", size=8).fit(images).transform(images)
    exp = parse_experiment({"protocol": {"repeats": 2, "test_size": 0.3}, "datasets": [{"name": "digits"}],
                            "extractors": [{"name": "pixels"}], "classifiers": [{"name": "logreg"}]})
    splits = make_splits(images.labels, exp.protocol, None)
    y = images.labels
    for r in recs:
        split = next(s for s in splits if s.id == r["split"])
        with threadpool_limits(limits=1):  # as the runner runs every cell: one BLAS thread
            want = retrieval_scores(X[split.train], y[split.train], X[split.test], y[split.test],
                                    whiten=r["task"] == "retrieval-whitened").summary()
        # float32 similarities summed in another order (another process, BLAS build or CPU) can swap two
        # near-tied neighbours: ~1e-5 of mAP here; a wrong split, label or query set moves it by > 1e-2
        for m in ("mAP", "recall@1", "recall@5", "recall@10", "precision@10"):
            assert r[m] == pytest.approx(want[m], abs=1e-4), m
    assert {r["classifier"] for r in recs} == {"cosine", "cosine+whitening"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### retrieval" in report and "### retrieval-whitened" in report and "| mAP |" in report
    assert (tmp_path / "out" / "plots" / "digits_retrieval.png").is_file()
    picture = json.loads(next(r for r in recs if r["split"] == splits[0].id)["picture"])
    assert len(picture["queries"]) == 4 and all(len(t) == 5 for t in picture["top"])
    assert all(images.labels[q] == c for q, c in zip(picture["queries"], picture["query_labels"]))


@pytest.mark.parametrize("table, expect", [
    ('[[tasks]]\nname = "retrieval"\nwhiten = "yes"\n', r"\[\[tasks\]\] #1 \(retrieval\): whiten must be true or false"),
    ('[[tasks]]\nname = "retrieval"\nwhitening = true\n', r"unknown key 'whitening' for task 'retrieval'; accepted: whiten"),
    ('[[tasks]]\nname = "retreival"\n', r"unknown task 'retreival'; did you mean 'retrieval'"),
    ('[[tasks]]\nname = "retrieval"\n', r"\[\[classifiers\]\] are given but no task uses them"),
])
def test_task_table_errors_are_one_line(tmp_path, capsys, table, expect):
    cfg = _write(tmp_path, SMALL + table)
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(expect, err), err


# -- the kNN classifier ------------------------------------------------------------------------------------
def test_weighted_knn_votes_by_exp_similarity_over_temperature():
    """Hand-worked: a query at 0°, neighbours at 0° (class 0), 60° and 90° (class 1); with k = 3 the votes are
    exp(1/T) for class 0 against exp(0.5/T) + exp(0/T) for class 1."""
    X = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    y = np.array([0, 1, 1, 1])
    for T in (0.07, 1.0, 10.0):
        knn = WeightedKNNClassifier(k=3, temperature=T).fit(X * 5.0, y)  # scale does not matter: cosine
        proba = knn.predict_proba(np.array([[2.0, 0.0]]))
        votes = np.array([np.exp(1 / T), np.exp(0.5 / T) + np.exp(0.0)])
        np.testing.assert_allclose(proba[0], votes / votes.sum(), rtol=1e-5)
    # T = 0.07: the one close neighbour outvotes two far ones; T = 10: nearly equal weights, two beat one
    assert WeightedKNNClassifier(k=3, temperature=0.07).fit(X, y).predict([[1.0, 0.0]])[0] == 0
    assert WeightedKNNClassifier(k=3, temperature=10.0).fit(X, y).predict([[1.0, 0.0]])[0] == 1
    # labels are returned as given
    assert set(WeightedKNNClassifier(k=1).fit(X, np.array(["a", "b", "b", "b"])).predict(X)) <= {"a", "b"}


def test_knn_searches_k_on_the_training_part():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 5)) + 3 * np.eye(5)[0], rng.normal(0, 1, (40, 5)) - 3 * np.eye(5)[0]])
    y = np.repeat([0, 1], 40)
    model, k = fit_with_search(WeightedKNN(), X, y, [1, 5, 15], scale=WeightedKNN.default_scale)
    assert k in (1, 5, 15) and isinstance(k, int)
    assert (model.predict(X) == y).mean() > 0.95


@pytest.mark.parametrize("table, expect", [
    ('name = "knn"\nk = [0]', r"k must be a positive integer"),
    ('name = "knn"\nk = [2.5]', r"k must be a positive integer"),
    ('name = "knn"\nC = [1.0]', r"unknown key 'C' in a knn classifier table"),
    ('name = "logreg"\nk = [5]', r"unknown key 'k' in a logreg classifier table"),
])
def test_knn_table_errors(table, expect):
    data = {"datasets": [{"name": "digits"}], "extractors": [{"name": "pixels"}],
            "classifiers": [tomllib.loads(table)]}
    with pytest.raises(ConfigError, match=expect):
        parse_experiment(data)


def test_knn_runs_in_an_experiment_and_reports_the_chosen_k(tmp_path):
    cfg = _write(tmp_path, SMALL + '[[classifiers]]\nname = "knn"\nk = [3, 7]\n')
    result = run(cfg, tmp_path / "out")
    knn = [r for r in result.records if r["classifier"] == "knn"]
    assert len(knn) == 2 and all(r["status"] == "ok" and r["C"] in (3, 7) and r["accuracy"] > 0.8 for r in knn)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.loc[summary["classifier"] == "knn", "C_chosen"].iloc[0].startswith("k=")


# -- significance in the report ------------------------------------------------------------------------------------
def _records(extractor: str, correct_per_split: list[int], n_test: int = 100) -> list[dict]:
    recs = []
    for i, n_right in enumerate(correct_per_split):
        truth = np.arange(n_test) % 10
        pred = truth.copy()
        pred[n_right:] = (pred[n_right:] + 1) % 10
        recs.append({"dataset": "toy", "task": "classification", "task_name": "classification", "extractor": extractor,
                     "weights": "", "classifier": "logreg", "split": f"holdout-{i}", "status": "ok",
                     "accuracy": n_right / n_test, "balanced_accuracy": n_right / n_test, "f1_macro": n_right / n_test,
                     "C": 1.0, "dim": 4, "n_train": 300, "n_test": n_test, "n_images": 400, "n_classes": 10,
                     "skipped_images": 0, "empty_features": 0, "extract_ms_per_image": 0.1, "images_per_s": 1e4,
                     "extractor_fit_s": 0.0, "classifier_fit_s": 0.1, "predict_ms_per_image": 0.01,
                     "confusion": json.dumps(np.eye(10, dtype=int).tolist()),
                     "class_names": json.dumps([str(c) for c in range(10)]), "cell_id": f"{extractor}-{i}",
                     "predictions": " ".join(map(str, pred)), "test_labels": " ".join(map(str, truth))})
    return recs


def _row(report: str, extractor: str) -> list[str]:
    """The extractor's row of the first per-dataset table (after the overview, whose table has no '#')."""
    lines = report.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| # |"))
    line = next(ln for ln in lines[start:] if ln.startswith("| ") and f"`{extractor}`" in ln)
    return [c.strip() for c in line.split("|")[1:-1]]


def test_extractors_one_image_apart_on_a_few_splits_are_reported_as_tied(tmp_path):
    """a and b differ by one test image (of 100) on 3 of 5 splits: tied (corrected t-test p = 0.21); c is 10
    points lower everywhere: not tied."""
    records = (_records("a", [90, 85, 88, 91, 87]) + _records("b", [89, 85, 87, 91, 86])
               + _records("c", [80, 76, 77, 82, 78]))
    write_reports(tmp_path, records, {"name": "toy"})
    report = (tmp_path / "report.md").read_text()
    a, b, c = _row(report, "a"), _row(report, "b"), _row(report, "c")
    assert a[4].startswith("**") and a[5] == "best"
    assert b[4].startswith("**") and float(b[5]) >= 0.05
    assert not c[4].startswith("**") and (c[5] == "< 0.001" or float(c[5]) < 0.05)


def test_single_split_uses_mcnemar_on_the_kept_predictions(tmp_path):
    records = _records("a", [90]) + _records("b", [89]) + _records("c", [60])
    write_reports(tmp_path, records, {"name": "toy"})
    report = (tmp_path / "report.md").read_text()
    assert _row(report, "b")[5] == "1.000" and _row(report, "b")[4].startswith("**")  # 1 discordant image
    assert _row(report, "c")[5] == "< 0.001"  # 30 discordant images, all one way: p = 2 / 2**30
    results = pd.read_csv(tmp_path / "results.csv")
    assert "predictions" not in results.columns  # kept in the cells, not in the CSV


def test_p_vs_best_compares_only_with_rows_the_table_shows(tmp_path):
    """A row with a failed split is listed under "Not measured", so it cannot be the reference."""
    hidden = _records("a", [99, 98, 97])
    hidden[2] = {**hidden[2], "status": "failed: MemoryError: out of memory", "accuracy": None}
    write_reports(tmp_path, hidden + _records("b", [90, 91, 92]) + _records("c", [89, 90, 90]), {"name": "toy"})
    report = (tmp_path / "report.md").read_text()
    assert _row(report, "b")[5] == "best" and _row(report, "b")[0] == "1"
    assert "`a` + logreg: failed: MemoryError" in report


def test_tasks_never_share_cells(tmp_path):
    from featbench import register_task
    from featbench.registry import TASKS
    from featbench.tasks.classification import Classification

    with pytest.raises(ConfigError, match=r"\[\[tasks\]\] #1 and #2 ask the same question"):
        parse_experiment({"datasets": [{"name": "digits"}], "extractors": [{"name": "pixels"}],
                          "classifiers": [{"name": "logreg"}],
                          "tasks": [{"name": "classification"}, {"name": "classification", "label": "again"}]})

    @register_task("test-classification-too")
    class Again(Classification):
        """The same question under another name: a different task, so different cells."""

    try:
        cfg = _write(tmp_path, SMALL + '[[tasks]]\nname = "classification"\n[[tasks]]\nname = "test-classification-too"\n')
        result = run(cfg, tmp_path / "out")
    finally:
        TASKS.unregister("test-classification-too")
    assert len(result.records) == 4 and len({r["cell_id"] for r in result.records}) == 4
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 4
    assert sorted({r["task"] for r in result.records}) == ["classification", "test-classification-too"]


def test_a_reused_cell_takes_the_tasks_current_label(tmp_path):
    run(_write(tmp_path, SMALL), tmp_path / "out")
    again = run(_write(tmp_path, SMALL + '[[tasks]]\nname = "classification"\nlabel = "accuracy"\n'), tmp_path / "out")
    assert again.reused == 2 and {r["task"] for r in again.records} == {"accuracy"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### " not in report  # one task, one section


def test_a_plugin_tasks_metrics_reach_the_summary_and_a_default_section(tmp_path):
    from featbench import register_task
    from featbench.registry import TASKS
    from featbench.tasks import Task

    @register_task("test-mean-norm")
    class MeanNorm(Task):
        """Mean L2 norm of the test features (a task with its own metric and no report of its own)."""

        description = "mean norm"
        metrics = ("mean_norm",)

        def run(self, cell, data):
            return {"mean_norm": float(np.linalg.norm(data.test, axis=1).mean())}

    try:
        cfg = _write(tmp_path, SMALL + '[[tasks]]\nname = "classification"\n[[tasks]]\nname = "test-mean-norm"\n')
        run(cfg, tmp_path / "out")
    finally:
        TASKS.unregister("test-mean-norm")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    norms = summary.loc[summary["task"] == "test-mean-norm", "mean_norm_mean"]
    assert len(norms) == 1 and norms.iloc[0] > 0
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("### test-mean-norm")[1]
    assert "| extractor | weights | classifier | mean_norm | splits |" in section and "`pixels(size=8)`" in section


def test_two_retrieval_tasks_draw_two_pictures(tmp_path):
    cfg = _write(tmp_path, SMALL.split("[[classifiers]]")[0] + '[[tasks]]\nname = "retrieval"\n[[tasks]]\n'
                 'name = "retrieval"\nlabel = "whitened"\nwhiten = true\n')
    run(cfg, tmp_path / "out")
    plots = tmp_path / "out" / "plots"
    assert (plots / "digits_retrieval.png").is_file() and (plots / "digits_whitened.png").is_file()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "plots/digits_retrieval.png" in report and "plots/digits_whitened.png" in report


def test_a_task_may_be_asked_of_some_extractors_only(tmp_path):
    two = SMALL.replace('[[classifiers]]', '[[extractors]]\nname = "hog"\nsize = 16\ncell_size = 8\n'
                        'block_size = 16\nblock_stride = 8\n[[classifiers]]')
    cfg = _write(tmp_path, two + '[[tasks]]\nname = "classification"\n[[tasks]]\nname = "retrieval"\n'
                 'extractors = ["hog*"]\n')
    result = run(cfg, tmp_path / "out")
    asked = sorted({(r["task"], r["extractor_name"]) for r in result.records})
    assert asked == [("classification", "hog"), ("classification", "pixels"), ("retrieval", "hog")]
    assert len(result.records) == 6  # 3 (task, extractor) pairs x 2 splits
    with pytest.raises(ConfigError, match=r"\[\[tasks\]\] #2: extractors: 'hgo' matches no \[\[extractors\]\] "
                                          r"label; did you mean"):
        parse_experiment(tomllib.loads(two + '[[tasks]]\nname = "classification"\n[[tasks]]\nname = "retrieval"\n'
                                             'extractors = ["hgo"]\n'))


def test_classification_report_states_the_classical_vs_deep_gap_with_its_test():
    """The best row of one family against the best of the other: gap in points and *p vs best* of the loser."""
    from featbench.tasks.classification import _family_gap_line

    ok = pd.DataFrame({
        "extractor": ["cnn", "hog", "cnn", "pixels"], "weights": ["imagenet", "", "imagenet", ""],
        "classifier": ["svm", "svm", "logreg", "svm"], "family": ["deep", "classical", "deep", "classical"],
        "accuracy_mean": [0.85, 0.765, 0.80, 0.5], "accuracy_std": [0.02, 0.04, 0.01, 0.1]})
    line = _family_gap_line(ok, {("hog", "", "svm"): ("0.036", False)})
    assert "best classical row `hog` + svm 0.765 ± 0.040" in line
    assert "best deep row `cnn` (imagenet) + svm 0.850 ± 0.020" in line
    assert "deep row is 8.5 points ahead (p = 0.036: a significant difference)" in line
    assert "not shown to differ" in _family_gap_line(ok, {("hog", "", "svm"): ("0.2", True)})
    assert "p < 0.001" in _family_gap_line(ok, {("hog", "", "svm"): ("< 0.001", False)})
    assert "no significance test" in _family_gap_line(ok, {})
    assert _family_gap_line(ok[ok["family"] == "classical"], {}) is None
    level = ok.assign(accuracy_mean=[0.85, 0.85, 0.80, 0.5])
    assert "the two are level (p = 1.000: not shown to differ)" in _family_gap_line(
        level, {("hog", "", "svm"): ("1.000", True)})
