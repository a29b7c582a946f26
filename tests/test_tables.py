"""summary_table: one row per (dataset, task, extractor, weights, classifier), from its splits."""

import numpy as np
import pandas as pd

from featbench.reporting.tables import GROUP, MEANS, METRICS, results_table, summary_table


def _reference(results: pd.DataFrame, metrics=()) -> pd.DataFrame:
    """The definition, one group at a time (what summary_table computes without the per-group loop)."""
    rows = []
    names = METRICS + [m for m in metrics if m not in METRICS and m in results.columns]
    for key, g in results.groupby(GROUP, sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        row = dict(zip(GROUP, key))
        row["splits"], row["splits_ok"] = len(g), len(ok)
        bad = g.loc[g["status"] != "ok", "status"]
        row["status"] = "ok" if bad.empty else str(bad.iloc[0])
        for m in names:
            vals = pd.to_numeric(ok[m], errors="coerce")
            row[f"{m}_mean"] = vals.mean() if len(ok) else float("nan")
            row[f"{m}_std"] = vals.std(ddof=1) if len(ok) > 1 else (0.0 if len(ok) else float("nan"))
        for m in MEANS:
            row[m] = pd.to_numeric(ok[m], errors="coerce").mean() if len(ok) else float("nan")
        row["dim"] = ok["dim"].iloc[0] if len(ok) else pd.NA
        for col in ("n_params", "gflops_per_image"):
            row[col] = pd.to_numeric(ok[col], errors="coerce").iloc[0] if len(ok) else float("nan")
        searched = g["searched"].dropna().iloc[0] if "searched" in g and g["searched"].notna().any() else "C"
        chosen = " ".join(f"{c:g}" for c in pd.to_numeric(ok["C"], errors="coerce").dropna())
        row["C_chosen"] = chosen if searched == "C" or not chosen else f"{searched}={chosen}"
        row["empty_features"] = pd.to_numeric(ok["empty_features"], errors="coerce").max() if len(ok) else 0
        row["family"], row["n_train"], row["n_test"] = g["family"].iloc[0], g["n_train"].iloc[0], g["n_test"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def _records(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for dataset in ("b-set", "a-set"):  # not in sorted order: groups keep the order of their first row
        for extractor in ("hog", "pixels", "broken"):
            for classifier, searched in (("linear-svm", None), ("knn", "k"), ("", None)):
                for split in range(4 if extractor == "pixels" else 3):
                    status = "ok"
                    if extractor == "broken" or (extractor == "hog" and split == 1 and classifier == "knn"):
                        status = f"failed: split {split}"
                    rec = {"dataset": dataset, "task": "classification" if classifier else "diagnostics",
                           "extractor": extractor, "weights": "", "classifier": classifier, "split": f"s{split}",
                           "status": status, "dim": 64, "n_train": 30, "n_test": 10, "family": "classical",
                           "empty_features": int(rng.integers(0, 3)), "extractor_fit_s": float(rng.random())}
                    if status == "ok" and classifier:
                        rec.update(accuracy=float(rng.random()), f1_macro=float(rng.random()),
                                   C=float(10.0 ** rng.integers(-2, 3)), classifier_fit_s=float(rng.random()))
                        if split == 2 and extractor == "pixels":
                            rec["f1_macro"] = float("nan")  # a metric missing in one split: skipped, not zero
                    if status == "ok" and not classifier:
                        rec["fisher_ratio"] = float(rng.random())
                    if searched and status == "ok":
                        rec["searched"] = searched
                    records.append(rec)
    return records


def test_summary_table_equals_the_per_group_definition():
    results = results_table(_records())
    for part in (results, results[results["status"] == "ok"], results[results["status"] != "ok"],
                 results.iloc[::2], results[results["dataset"] == "a-set"]):
        got = summary_table(part, ("fisher_ratio",))
        want = _reference(part, ("fisher_ratio",))
        assert got.to_csv(index=False) == want.to_csv(index=False)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_summary_table_cases():
    summary = summary_table(results_table(_records()), ("fisher_ratio",))
    first = summary.iloc[0]
    assert (first["dataset"], first["extractor"], first["classifier"]) == ("b-set", "hog", "linear-svm")
    knn = summary[(summary["dataset"] == "b-set") & (summary["extractor"] == "hog")
                  & (summary["classifier"] == "knn")].iloc[0]
    assert (knn["splits"], knn["splits_ok"], knn["status"]) == (3, 2, "failed: split 1")
    assert knn["C_chosen"].startswith("k=")
    broken = summary[summary["extractor"] == "broken"].iloc[0]
    assert broken["splits_ok"] == 0 and np.isnan(broken["accuracy_mean"]) and broken["empty_features"] == 0
    assert summary_table(results_table(_records()).iloc[:0]).empty
