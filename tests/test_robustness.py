"""The robustness task: severity 0 is the classification task's accuracy for the same cell, corrupted views
are the extractor (fitted once, on the clean training images) applied to featbench.corruptions.corrupt of the
test images, views come from the cache the second time, CE/mCE follow Hendrycks & Dietterich, bad parameters
get one line, and the report tests the claims."""

from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from featbench import run
from featbench.corruptions import corrupt
from featbench.datasets import load_dataset
from featbench.errors import ConfigError
from featbench.registry import create_extractor
from featbench.tasks.robustness import Robustness, corruption_errors, robustness_table

EXP = """
name = "rob"
[run]
n_jobs = 1
[protocol]
repeats = 2
test_size = 0.3
[[datasets]]
name = "textures"
patch_size = 32
limit_per_class = 12
[[extractors]]
name = "pixels"
size = 8
[[extractors]]
name = "hog"
size = 32
[[extractors]]
label = "pca"
name = "pca"
size = 16
n_components = 6
[[extractors]]
label = "lbp"
name = "lbp"
[[classifiers]]
name = "logreg"
C = [0.1, 1.0, 10.0]
[[classifiers]]
name = "linear-svm"
C = [0.01, 1.0]
[[tasks]]
name = "classification"
[[tasks]]
name = "robustness"
corruptions = ["rotation", "gaussian_noise", "brightness"]
severities = [1, 4]
"""


@pytest.fixture()
def result(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(EXP))
    return run(cfg, tmp_path / "out", n_jobs=1), cfg, tmp_path


def test_severity_zero_is_the_classification_accuracy(result):
    res, _, _ = result
    by = {(r["task"], r["extractor"], r["classifier"], r["split"]): r for r in res.records}
    rob = [r for r in res.records if r["task"] == "robustness"]
    assert len(rob) == 4 * 2 * 2 and all(r["status"] == "ok" for r in rob)
    for r in rob:
        c = by[("classification", r["extractor"], r["classifier"], r["split"])]
        # same features, same search, same model: the same predictions, not merely close
        assert r["accuracy"] == c["accuracy"] and r["C"] == c["C"] and r["predictions"] == c["predictions"]


def test_views_are_the_fitted_extractor_on_corrupted_test_images(result):
    res, _, _ = result
    from featbench.classifiers import search_and_fit
    from featbench.features import _digest
    from featbench.registry import CLASSIFIERS

    images = load_dataset("textures", patch_size=32, limit_per_class=12)
    rec = next(r for r in res.records if r["task"] == "robustness" and r["extractor"] == "pca"
               and r["classifier"] == "logreg" and r["split"] == res.records[0]["split"])
    from featbench.evaluation import Protocol, make_splits

    # the runner's first split (the experiment's protocol: hold-out, 2 repeats, 30 % test, seed 0)
    split = make_splits(images.labels, Protocol(kind="holdout", repeats=2, test_size=0.3, seed=0))[0]
    assert split.id == rec["split"]
    ext = create_extractor("pca", size=16, n_components=6)
    train = images.subset(split.train)
    ext.fit(train, train.labels)
    X_train = ext.transform(train)
    clf = CLASSIFIERS.get("logreg")()
    model = search_and_fit(clf, X_train, train.labels, [0.1, 1.0, 10.0], inner_folds=3, random_state=0).model
    y_test = images.labels[split.test]
    acc = json.loads(rec["corrupted_accuracy"])
    for name, severities in (("rotation", [1, 4]), ("gaussian_noise", [1, 4])):
        for k, s in enumerate(severities):
            views = np.stack([corrupt(images[p], name, s, int(_digest(int(p))[:8], 16)) for p in split.test])
            expected = float(np.mean(model.predict(ext.transform(views)) == y_test))
            # PCA's float32 products may differ in the last bits between processes: a prediction could flip
            # only on an exact tie, so allow one test image
            assert abs(acc[name][k] - expected) <= 1 / len(y_test) + 1e-12, (name, s)


def test_views_come_from_the_cache_and_the_extractor_is_not_refitted(result):
    res, cfg, tmp = result
    first = [r for r in res.records if r["task"] == "robustness"]
    # 3 corruptions x 2 severities, per (extractor, split); computed once for both classifiers
    assert all(r["requested_features"] == 6 for r in first)
    assert all(r["requested_fit_s"] == 0 for r in first)  # the split's own fitted extractor was reused
    again = run(cfg, tmp / "out2", n_jobs=1)
    rob = [r for r in again.records if r["task"] == "robustness"]
    assert all(r["requested_features_computed"] == 0 for r in rob)
    stages = json.loads((tmp / "out2" / "run.json").read_text())["stages"]
    assert "requested_features_wall_s" in stages
    for a, b in zip(sorted(first, key=lambda r: r["cell_id"]), sorted(rob, key=lambda r: r["cell_id"])):
        assert a["corrupted_accuracy"] == b["corrupted_accuracy"] and a["corrupted_mAP"] == b["corrupted_mAP"]


def test_records_and_report(result):
    res, _, tmp = result
    rob = [r for r in res.records if r["task"] == "robustness"]
    for r in rob:
        acc = json.loads(r["corrupted_accuracy"])
        assert set(acc) == {"rotation", "gaussian_noise", "brightness"} and all(len(v) == 2 for v in acc.values())
        values = [a for v in acc.values() for a in v]
        assert r["mean_corrupted_accuracy"] == pytest.approx(np.mean(values), abs=1e-12)
        assert r["relative_drop"] == pytest.approx((r["accuracy"] - np.mean(values)) / r["accuracy"], abs=1e-12)
        assert 0 <= r["mAP"] <= 1 and len(json.loads(r["corrupted_mAP"])["rotation"]) == 2
    report = (tmp / "out" / "report.md").read_text()
    section = report[report.index("### robustness"):]
    assert "mCE (baseline `pixels(size=8)`)" in section  # the one row of the extractor named pixels
    assert re.search(r"\*\*rotation\*\* \(rotation\): (degrades least|unchanged|improves most): ", section)
    assert "Retrieval under rotation 90°" in section  # severity 4 of rotation is 90 degrees
    assert "LBP under brightness/contrast" in section
    assert (tmp / "out" / "plots" / "textures_robustness_severity.png").is_file()
    assert (tmp / "out" / "plots" / "textures_robustness_examples.png").is_file()
    # the baseline's own CE is 1 for every corruption and split
    table = robustness_table(pd.DataFrame(rob), "pixels(size=8)")
    base = table[table["extractor"] == "pixels(size=8)"]
    assert len(base) == 2  # one per classifier
    for c in ("rotation", "gaussian_noise", "brightness"):
        finite = base[f"CE:{c}"].dropna()
        assert np.allclose(finite, 1.0)


def test_corruption_error_is_hendrycks_and_dietterich():
    err = {"a": np.array([0.2, 0.4]), "b": np.array([0.5, 0.5])}
    base = {"a": np.array([0.4, 0.8]), "b": np.array([0.25, 0.25])}
    ce = corruption_errors(err, base)
    assert ce["a"] == pytest.approx(0.6 / 1.2) and ce["b"] == pytest.approx(1.0 / 0.5)
    assert np.isnan(corruption_errors({"a": np.array([0.1])}, {"a": np.array([0.0])})["a"])  # baseline never errs


@pytest.mark.parametrize("params, match", [
    ({"corruptions": ["fog"]}, "corruptions must be a non-empty list"),
    ({"corruptions": []}, "corruptions must be a non-empty list"),
    ({"corruptions": ["rotation", "rotation"]}, "must not repeat"),
    ({"severities": [0, 1]}, r"severities must be a non-empty list of distinct integers in \[1, 5\]"),
    ({"severities": [6]}, "severities"),
    ({"severities": [1, 1]}, "severities"),
    ({"baseline": ""}, "baseline must be an extractor label"),
    ({"retrieval": "yes"}, "retrieval must be true or false"),
    ({"colour": True}, "unknown key 'colour' for task 'robustness'"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        Robustness.check_params(params)


@pytest.mark.parametrize("baseline, ok", [("pixels", True), ("pixels(size=8)", True), ("pixel", False),
                                           ("hog", False)])
def test_baseline_is_checked_against_the_rows_before_the_run(baseline, ok):
    """A baseline naming no row the task runs on is refused when the file is read (exit 2), not found out
    after the whole run; the label or the extractor name of a row are accepted, and the default is not
    checked (no pixels row: the report says no CE could be computed)."""
    from featbench.config import parse_experiment

    def exp(**task):
        return {"name": "r", "datasets": [{"name": "digits"}],
                "extractors": [{"name": "pixels", "size": 8}, {"name": "hog", "size": 16}],
                "classifiers": [{"name": "logreg"}],
                "tasks": [{"name": "robustness", "extractors": ["pixels*"], **task}]}

    if ok:
        parse_experiment(exp(baseline=baseline), source="t.toml")
    else:
        with pytest.raises(ConfigError, match=rf"baseline '{baseline}' is not the label or extractor name of a "
                                              r"row this task runs on.*rows: pixels\(size=8\)"):
            parse_experiment(exp(baseline=baseline), source="t.toml")
    parse_experiment({**exp(), "extractors": [{"name": "hog", "size": 16}],
                      "tasks": [{"name": "robustness"}]}, source="t.toml")


def test_defaults():
    p = Robustness.check_params({})
    assert p["severities"] == [1, 2, 3, 4, 5] and len(p["corruptions"]) == 15
    assert p["baseline"] == "pixels" and p["retrieval"] is True


def _rows(base_acc: dict, other_acc: dict) -> pd.DataFrame:
    """Records of a baseline and one other extractor (one classifier, one split) with the given accuracies."""
    out = []
    for name, acc in (("pixels", base_acc), ("hog", other_acc)):
        values = [a for v in acc.values() for a in v]
        out.append({"dataset": "d", "extractor": name, "extractor_name": name, "weights": "", "classifier": "logreg",
                    "split": 0, "accuracy": 1.0, "corrupted_accuracy": json.dumps(acc),
                    "mean_corrupted_accuracy": float(np.mean(values)), "relative_drop": 1 - float(np.mean(values)),
                    "corrupted_mAP": None, "severities": json.dumps([1, 2]), "n_test": 10})
    return pd.DataFrame(out)


def test_a_baseline_without_errors_on_a_corruption_leaves_it_out_of_mce_and_says_so():
    from featbench.tasks.robustness import _summary_lines

    rows = _rows({"a": [1.0, 1.0], "b": [0.5, 0.5]}, {"a": [0.9, 0.7], "b": [0.75, 0.75]})
    table = robustness_table(rows, "pixels")
    hog = table[table["extractor"] == "hog"].iloc[0]
    assert np.isnan(hog["CE:a"]) and hog["CE:b"] == pytest.approx(0.5 / 1.0)
    assert hog["mCE_mean"] == pytest.approx(0.5)  # the mean over the corruption that has a CE, not NaN
    text = "\n".join(_summary_lines(table, "pixels", rows))
    assert "CE undefined on at least one split for 1 corruption(s)" in text and "(a)" in text
    assert "no `pixels` row" not in text

    perfect = _rows({"a": [1.0, 1.0], "b": [1.0, 1.0]}, {"a": [0.9, 0.7], "b": [0.75, 0.75]})
    text = "\n".join(_summary_lines(robustness_table(perfect, "pixels"), "pixels", perfect))
    assert "the baseline `pixels` made no errors under any corruption" in text

    missing = perfect[perfect["extractor"] == "hog"]
    text = "\n".join(_summary_lines(robustness_table(missing, "pixels"), "pixels", missing))
    assert "**No CE**: the run has no `pixels` row" in text


def test_retrieval_claim_warns_when_the_compared_rows_are_near_chance():
    from featbench.tasks.robustness import claim_lines

    def row(name: str, params: dict, m_clean: float, m90: float) -> dict:
        return {"dataset": "d", "extractor": name, "extractor_name": name, "extractor_params": json.dumps(params),
                "weights": "", "classifier": "logreg", "split": 0, "accuracy": 0.5, "n_classes": 10,
                "corrupted_accuracy": json.dumps({"rotation": [0.5] * 4}), "severities": json.dumps([1, 2, 3, 4]),
                "mAP": m_clean, "corrupted_mAP": json.dumps({"rotation": [m_clean, m_clean, m_clean, m90]})}

    # chance 0.1; a quarter of the way to 1 is 0.325: LBP's 0.12 is near chance, HOG's 0.6 is not
    rows = pd.DataFrame([row("hog", {}, 0.6, 0.3), row("lbp", {"grid": 1}, 0.12, 0.12)])
    text = "\n".join(claim_lines(rows))
    assert "**Retrieval under rotation 90°** (claim: a rotation-invariant descriptor loses less mAP than HOG): holds" in text
    assert "Caution: `lbp` has a clean mAP close to a random ranking's (about 0.100)" in text
    fine = pd.DataFrame([row("hog", {}, 0.6, 0.3), row("lbp", {"grid": 1}, 0.9, 0.9)])
    assert "random ranking" not in "\n".join(claim_lines(fine))


def test_a_row_that_gains_under_a_corruption_is_not_said_to_degrade_least():
    from featbench.tasks.robustness import claim_lines

    def row(name: str, clean: float, under: float) -> dict:
        return {"dataset": "d", "extractor": name, "extractor_name": name, "extractor_params": "{}",
                "weights": "", "classifier": "logreg", "split": 0, "accuracy": clean, "n_classes": 4,
                "corrupted_accuracy": json.dumps({"rotation": [under, under]}), "severities": json.dumps([1, 3])}

    gains = claim_lines(pd.DataFrame([row("hog", 0.8, 0.5), row("lbp", 0.8, 0.88)]))
    line = next(x for x in gains if x.startswith("- **rotation**"))
    assert "improves most: `lbp` (0.800 → 0.880, +10.0 %)" in line and "degrades least" not in line
    drops = claim_lines(pd.DataFrame([row("hog", 0.8, 0.5), row("lbp", 0.8, 0.7)]))
    assert "degrades least: `lbp` (0.800 → 0.700, −12.5 %)" in next(x for x in drops if x.startswith("- **rotation**"))
