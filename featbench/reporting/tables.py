"""Records → per-split and summary tables (pandas)."""

from __future__ import annotations

import numpy as np
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

    ``metrics``: further metric columns (a plugin task's) to average beside the built-in ones. Groups are listed
    in the order of their first row. Means, standard deviations (ddof 1; 0 for one split), the chosen C values,
    ``dim``, ``n_params`` and ``gflops_per_image`` come from the splits whose status is ``ok``; ``status`` is the
    first status that is not (``ok`` when none).
    """
    metric_names = METRICS + [m for m in metrics if m not in METRICS and m in results.columns]
    n = len(results)
    gid = (results.groupby(GROUP, sort=False, dropna=False).ngroup().to_numpy() if n
           else np.zeros(0, dtype=np.int64))
    n_groups = int(gid.max()) + 1 if n else 0
    ok = (results["status"] == "ok").to_numpy(dtype=bool) if n else np.zeros(0, dtype=bool)
    positions = np.arange(n)
    first = _first(positions, gid, n_groups)
    first_ok = _first(positions[ok], gid[ok], n_groups)
    first_bad = _first(positions[~ok], gid[~ok], n_groups)
    has_ok = first_ok >= 0
    n_ok = np.bincount(gid[ok], minlength=n_groups)

    def numeric(col: str) -> np.ndarray:
        return pd.to_numeric(results[col], errors="coerce").to_numpy()

    def mean_std(col: str) -> tuple[np.ndarray, np.ndarray]:
        # as pandas' Series.mean / Series.std(ddof=1) of each group's ok rows (NaN skipped), summed in row order
        x = numeric(col).astype(np.float64)
        use = ok & ~np.isnan(x)
        count = np.bincount(gid[use], minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(gid[use], weights=x[use], minlength=n_groups) / count
            dev = (mean[gid[use]] - x[use]) ** 2
            std = np.sqrt(np.bincount(gid[use], weights=dev, minlength=n_groups) / (count - 1))
        return mean, np.where(count > 1, std, np.nan)

    def at(col: str, where: np.ndarray, fill) -> list:
        values = results[col].to_numpy(dtype=object)
        return [values[i] if i >= 0 else fill for i in where]

    out: dict[str, object] = {}
    for col in GROUP:
        out[col] = results[col].to_numpy(dtype=object)[first] if n else []
    out["splits"] = np.bincount(gid, minlength=n_groups)
    out["splits_ok"] = n_ok
    out["status"] = ["ok" if i < 0 else str(s) for i, s in zip(first_bad, at("status", first_bad, None))]
    for m in metric_names:
        mean, std = mean_std(m)
        out[f"{m}_mean"] = mean
        out[f"{m}_std"] = np.where(n_ok == 1, 0.0, std)
    for m in MEANS:
        out[m] = mean_std(m)[0]
    out["dim"] = at("dim", first_ok, pd.NA)
    for col in ("n_params", "gflops_per_image"):  # the first ok split's (NaN where none is ok)
        values = numeric(col)
        out[col] = values[first_ok] if has_ok.all() else np.where(has_ok, values[np.maximum(first_ok, 0)], np.nan)
    if "searched" in results:
        searched_at = _first(positions[results["searched"].notna().to_numpy()],
                             gid[results["searched"].notna().to_numpy()], n_groups)
        searched = [s if i >= 0 else "C" for i, s in zip(searched_at, at("searched", searched_at, "C"))]
    else:
        searched = ["C"] * n_groups
    C = numeric("C").astype(np.float64)
    chosen = [[] for _ in range(n_groups)]
    for i in positions[ok & ~np.isnan(C)]:
        chosen[gid[i]].append(f"{C[i]:g}")
    out["C_chosen"] = [" ".join(c) if s == "C" or not c else f"{s}={' '.join(c)}" for c, s in zip(chosen, searched)]
    empty = pd.Series(numeric("empty_features")[ok]).groupby(gid[ok]).max()  # NaN only where every split's is
    out["empty_features"] = (empty.reindex(range(n_groups), fill_value=0).to_numpy() if ok.any()
                             else np.zeros(n_groups, dtype=np.int64))
    for col in ("family", "n_train", "n_test"):
        out[col] = at(col, first, None)
    if not n_groups:
        return pd.DataFrame()
    return pd.DataFrame(out).infer_objects()


def _first(positions: np.ndarray, gid: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the first of ``positions`` (ascending) that belongs to it; -1 where none does."""
    first = np.full(n_groups, -1, dtype=np.int64)
    groups, at = np.unique(gid, return_index=True)  # ``at``: where each group occurs first
    first[groups] = positions[at]
    return first
