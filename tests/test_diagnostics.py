"""The ``diagnostics`` task: the Fisher trace ratio is the textbook scatter-matrix formula, the silhouette is
scikit-learn's on the sample, the map is kept for the first split only, the report ranks against accuracy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from featbench.errors import ConfigError
from featbench.reporting import write_reports
from featbench.tasks.base import TaskInput
from featbench.tasks.diagnostics import Diagnostics, fisher_trace_ratio, stratified_sample


def _blobs(n_per: int = 40, d: int = 6, sep: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=sep, size=(3, d))
    y = np.repeat(np.arange(3), n_per)
    return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def test_fisher_trace_ratio_is_the_scatter_matrix_formula():
    X, y = _blobs()
    X = X.astype(np.float64)
    mean = X.mean(0)
    S_B = sum((y == c).sum() * np.outer(X[y == c].mean(0) - mean, X[y == c].mean(0) - mean) for c in range(3))
    S_W = sum((X[y == c] - X[y == c].mean(0)).T @ (X[y == c] - X[y == c].mean(0)) for c in range(3))
    assert fisher_trace_ratio(X, y) == pytest.approx(np.trace(S_B) / np.trace(S_W), rel=1e-12)
    assert fisher_trace_ratio(7.0 * X, y) == pytest.approx(fisher_trace_ratio(X, y), rel=1e-12)
    # better separated classes score higher
    assert fisher_trace_ratio(*_blobs(sep=6.0)) > fisher_trace_ratio(*_blobs(sep=1.0))


def test_stratified_sample_keeps_every_class_in_proportion():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = stratified_sample(y, 100, seed=0)
    assert list(np.bincount(y[idx])) == [90, 9, 1]
    assert (np.diff(idx) > 0).all() and (stratified_sample(y[:50], 100, 0) == np.arange(50)).all()


def _input(split_index: int) -> TaskInput:
    X, y = _blobs()
    return TaskInput(train=X, test=X[:3], y_train=y, y_test=y[:3], n_classes=3, class_names=["a", "b", "c"],
                     split_id=f"holdout-{split_index}", split_index=split_index,
                     train_positions=np.arange(len(y)), test_positions=np.arange(3))


def test_run_metrics_and_the_map_of_the_first_split_only():
    task = Diagnostics("diagnostics", Diagnostics.check_params({"max_points": 60}))
    cell = task.cells()[0]
    first, second = task.run(cell, _input(0)), task.run(cell, _input(1))
    X, y = _blobs()
    Z = StandardScaler().fit_transform(X.astype(np.float64))
    idx = stratified_sample(y, 60, 0)
    assert first["silhouette"] == pytest.approx(silhouette_score(Z[idx], y[idx], metric="cosine"), rel=1e-9)
    assert first["fisher_ratio"] == pytest.approx(fisher_trace_ratio(Z, y), rel=1e-12)
    picture = json.loads(first["picture"])
    assert np.asarray(picture["xy"]).shape == (60, 2) and picture["labels"] == y[idx].tolist()
    assert "picture" not in second


@pytest.mark.parametrize("params", [{"max_points": 5}, {"perplexity": 0}, {"tries": 3}, {"max_points": True},
                                    {"tsne_iterations": 100}, {"tsne_iterations": 500.0}])
def test_bad_parameters_name_the_key(params):
    with pytest.raises(ConfigError, match=next(iter(params))):
        Diagnostics.check_params(params)


def test_report_puts_accuracy_beside_and_states_the_rank_correlation(tmp_path):
    records = []
    for ext, sep, acc in (("good", 6.0, 0.95), ("mid", 3.0, 0.8), ("bad", 0.5, 0.4)):
        X, y = _blobs(sep=sep)
        for i in range(2):
            data = _input(i)
            data.train = X
            base = {"dataset": "toy", "extractor": ext, "weights": "", "split": f"holdout-{i}", "status": "ok",
                    "dim": 6, "n_train": 120, "n_test": 3, "family": "classical", "extract_ms_per_image": 1.0,
                    "n_images": 123, "n_classes": 3, "skipped_images": 0}
            task = Diagnostics("diagnostics", Diagnostics.check_params({"max_points": 60}))
            records.append({**base, "task": "diagnostics", "task_name": "diagnostics", "classifier": "",
                            **task.run(task.cells()[0], data)})
            records.append({**base, "task": "classification", "task_name": "classification", "classifier": "logreg",
                            "accuracy": acc, "balanced_accuracy": acc, "f1_macro": acc, "C": 1.0})
    write_reports(tmp_path, records, {"name": "toy"})
    Diagnostics("diagnostics", {}).after_run(tmp_path, [r for r in records if r["task"] == "diagnostics"],
                                             {"toy": None})
    write_reports(tmp_path, records, {"name": "toy"})  # again: the picture exists now and is linked
    report = (tmp_path / "report.md").read_text()
    section = report[report.index("### diagnostics"):]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`good`", "`mid`", "`bad`"]
    assert rows[0].split("|")[4].strip() == "0.950"
    assert "Spearman's ρ between the Fisher criterion and the accuracy over 3 extractors = 1.00" in section
    assert "plots/toy_diagnostics_maps.png" in section and (tmp_path / "plots" / "toy_diagnostics_maps.png").is_file()
    assert "picture" not in pd.read_csv(tmp_path / "results.csv").columns
