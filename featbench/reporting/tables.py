"""Records → per-split and summary tables (pandas)."""

from __future__ import annotations

import pandas as pd

__all__ = ["results_table", "summary_table", "RESULT_COLUMNS", "TIMING_COLUMNS"]

RESULT_COLUMNS = [
    "dataset", "task", "extractor", "weights", "classifier", "split", "status",
    "accuracy", "balanced_accuracy", "f1_macro", "mAP", "recall@1", "recall@5", "recall@10", "precision@10",
    "C", "dim", "n_params", "gflops_per_image", "n_train", "n_test",
    "empty_features",
    "extractor_fit_s", "extract_ms_per_image", "images_per_s", "classifier_fit_s", "predict_ms_per_image",
    "query_ms_per_image", "not_converged", "n_fits", "task_s", "extract_peak_rss_mb", "task_peak_rss_mb",
    "features_from_cache", "family", "extractor_name", "extractor_params",
    "classifier_name", "C_grid", "task_name", "n_images", "n_classes", "skipped_images", "dropped_classes", "confusion", "class_names",
    "cell_id",
]
# Measured durations and memory: they differ between two runs of the same cells.
TIMING_COLUMNS = [
    "extractor_fit_s", "extract_ms_per_image", "images_per_s", "classifier_fit_s",
    "predict_ms_per_image", "query_ms_per_image", "task_s", "extract_peak_rss_mb", "task_peak_rss_mb",
    "features_from_cache",
]
GROUP = ["dataset", "task", "extractor", "weights", "classifier"]
METRICS = ["accuracy", "balanced_accuracy", "f1_macro", "mAP", "recall@1", "recall@5", "recall@10", "precision@10"]
MEANS = ["extractor_fit_s", "extract_ms_per_image", "images_per_s", "classifier_fit_s", "predict_ms_per_image",
         "query_ms_per_image"]


def results_table(records: list[dict]) -> pd.DataFrame:
    """One row per (dataset, extractor, classifier, split), in run order."""
    df = pd.DataFrame.from_records(records)
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    # sorted: a record read back from its cell and one just computed list their keys in different orders
    extra = sorted(c for c in df.columns if c not in RESULT_COLUMNS)
    df = df[RESULT_COLUMNS + extra]
    df["weights"] = df["weights"].fillna("")
    # records written before tasks existed are classification records
    df["task"] = df["task"].fillna("classification")
    df["task_name"] = df["task_name"].fillna("classification")
    df["classifier"] = df["classifier"].fillna("")
    return df


def summary_table(results: pd.DataFrame, metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean and standard deviation over splits, one row per (dataset, task, extractor, weights, classifier).

    ``metrics``: further metric columns (a plugin task's) to average beside the built-in ones.
    """
    rows = []
    metric_names = METRICS + [m for m in metrics if m not in METRICS and m in results.columns]
    for key, g in results.groupby(GROUP, sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        row = dict(zip(GROUP, key))
        row["splits"] = len(g)
        row["splits_ok"] = len(ok)
        bad = g.loc[g["status"] != "ok", "status"]
        row["status"] = "ok" if bad.empty else str(bad.iloc[0])
        for m in metric_names:
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
        row["family"] = g["family"].iloc[0]
        row["n_train"] = g["n_train"].iloc[0]
        row["n_test"] = g["n_test"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)
