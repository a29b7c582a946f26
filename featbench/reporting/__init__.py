"""Records → ``results.csv``, ``summary.csv``, ``report.md``, plots and ``run.json``, written atomically."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from featbench._io import atomic_write_json, atomic_write_text
from featbench.reporting.plots import accuracy_vs_time, confusion_plot
from featbench.reporting.tables import RESULT_COLUMNS, TIMING_COLUMNS, results_table, summary_table

__all__ = ["write_reports", "render_markdown", "results_table", "summary_table", "RESULT_COLUMNS",
           "TIMING_COLUMNS"]


def write_reports(out_dir: str | Path, records: list[dict], run_info: dict) -> dict[str, Path]:
    """Write every report of a run into ``out_dir``; returns the paths by kind."""
    out = Path(out_dir)
    results = results_table(records)
    summary = summary_table(results)
    paths = {
        "results": atomic_write_text(out / "results.csv", results.to_csv(index=False)),
        "summary": atomic_write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.6g")),
    }
    plots = {}
    for dataset, s in summary.groupby("dataset", sort=False):
        slug = _slug(dataset)
        plots[dataset] = {"time": accuracy_vs_time(s, f"{dataset}: accuracy vs extraction cost",
                                                   out / "plots" / f"{slug}_accuracy_vs_time.png").relative_to(out)}
        best = _best(s)
        if best is not None:
            rows = results[(results["dataset"] == dataset) & (results["extractor"] == best["extractor"])
                           & (results["classifier"] == best["classifier"]) & (results["status"] == "ok")]
            matrix = np.sum([np.array(json.loads(c)) for c in rows["confusion"]], axis=0)
            names = json.loads(rows["class_names"].iloc[0])
            plots[dataset]["confusion"] = confusion_plot(
                matrix, names, f"{dataset}: {best['extractor']} + {best['classifier']} (summed over splits)",
                out / "plots" / f"{slug}_confusion.png").relative_to(out)
            plots[dataset]["matrix"] = (matrix, names)
    paths["report"] = atomic_write_text(out / "report.md", render_markdown(summary, results, plots, run_info))
    paths["run"] = atomic_write_json(out / "run.json", run_info)
    return paths


def _best(summary: pd.DataFrame):
    ok = summary[summary["status"] == "ok"]
    if ok.empty:
        return None
    return ok.sort_values(["accuracy_mean", "extract_ms_per_image"], ascending=[False, True]).iloc[0]


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "—"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def _fmt_count(x) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x):
        return "—"
    return f"{x / 1e6:.2f} M" if x >= 1e5 else f"{int(x):,}"


def render_markdown(summary: pd.DataFrame, results: pd.DataFrame, plots: dict, run_info: dict) -> str:
    """The human-readable report: one table per dataset, sorted by accuracy, with costs beside it."""
    ver = run_info.get("versions", {})
    cells = run_info.get("cells", {})
    lines = [
        f"# featbench report: {run_info.get('name', '')}",
        "",
        f"Experiment `{run_info.get('experiment', '')}`, finished {run_info.get('finished', '')} "
        f"with featbench {ver.get('featbench', '?')}, scikit-learn {ver.get('scikit-learn', '?')}, "
        f"OpenCV {ver.get('opencv-python-headless', '?')} on {run_info.get('cpu', '?')} "
        f"({run_info.get('cores', '?')} cores, extraction with {run_info.get('n_jobs', '?')} "
        f"{run_info.get('backend', '')} workers). Cells: {cells.get('total', '?')} "
        f"({cells.get('computed', '?')} computed in this run, {cells.get('reused', '?')} reused).",
        "",
        *([f"**{cells['unreadable']} cell(s) of this run were missing or unreadable when this report was written "
           "and are left out of it; run the experiment again to recompute them.**", ""]
          if cells.get("unreadable") else []),
        *([f"**Ran without a feature cache: {run_info['feature_cache_problem']}.**", ""]
          if run_info.get("feature_cache_problem") else []),
        "How to read it: accuracy, balanced accuracy and macro F1 are on the test part, mean ± standard "
        "deviation over the splits; C was chosen by stratified cross-validation on the training part only. "
        "*Extract ms/img* is wall time per image of `transform` (setup and `fit` apart, in *extractor fit s*), "
        "*classifier fit s* includes the C search. *Weights* says where a deep extractor's weights came from "
        "(`random` = untrained); it is empty for classical extractors.",
        "",
    ]
    for dataset, s in summary.groupby("dataset", sort=False):
        r = results[results["dataset"] == dataset].iloc[0]
        n_splits = int(s["splits"].max())
        lines += [
            f"## {dataset}",
            "",
            f"{r['n_images']} images, {r['n_classes']} classes; {n_splits} split(s) of "
            f"{r['n_train']} train / {r['n_test']} test images.",
            "",
        ]
        if int(r["skipped_images"] or 0):
            lines += [f"**{int(r['skipped_images'])} unreadable image(s) were left out of this dataset.**", ""]
        dropped = r.get("dropped_classes")
        if isinstance(dropped, str) and dropped:
            lines += [f"**Warning: class(es) left out because none of their images could be read: {dropped}. "
                      "They are not among the classes above and do not enter any metric.**", ""]
        ok = s[s["status"] == "ok"].sort_values(["accuracy_mean", "extract_ms_per_image"], ascending=[False, True])
        deep = bool(pd.to_numeric(ok["n_params"], errors="coerce").notna().any())
        header = ["#", "extractor", "weights", "classifier", "accuracy", "balanced acc.", "macro F1", "dim",
                  *(["params", "GFLOPs/img"] if deep else []),
                  "extract ms/img", "images/s", "extractor fit s", "classifier fit s", "predict ms/img", "C chosen"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for i, (_, row) in enumerate(ok.iterrows(), 1):
            lines.append("| " + " | ".join([
                str(i), f"`{row['extractor']}`", row["weights"] or "", row["classifier"],
                f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
                f"{row['balanced_accuracy_mean']:.3f}", f"{row['f1_macro_mean']:.3f}", _fmt_count(row["dim"]),
                *([_fmt_count(row["n_params"]), _fmt(row["gflops_per_image"])] if deep else []),
                _fmt(row["extract_ms_per_image"]), _fmt(row["images_per_s"]), _fmt(row["extractor_fit_s"]),
                _fmt(row["classifier_fit_s"]), _fmt(row["predict_ms_per_image"]), row["C_chosen"],
            ]) + " |")
        bad = s[s["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            for _, row in bad.iterrows():
                lines.append(f"- `{row['extractor']}` + {row['classifier']}: {row['status']}")
        empty = ok[pd.to_numeric(ok["empty_features"], errors="coerce") > 0]
        if not empty.empty:
            lines += ["", "Images whose feature vector is all zeros (e.g. no keypoints found), per split:", ""]
            for _, row in empty.drop_duplicates("extractor").iterrows():
                lines.append(f"- `{row['extractor']}`: up to {int(row['empty_features'])} of "
                             f"{int(row['n_train']) + int(row['n_test'])}")
        p = plots.get(dataset, {})
        if "time" in p:
            lines += ["", f"![{dataset}: accuracy vs extraction time]({p['time'].as_posix()})"]
        if "confusion" in p:
            best = _best(s)
            matrix, names = p["matrix"]
            lines += ["", f"Best row: `{best['extractor']}` + {best['classifier']}. Confusion matrix summed over "
                      "splits (rows: true class, columns: predicted):", "",
                      f"![{dataset} confusion matrix]({p['confusion'].as_posix()})", ""]
            lines.append("| true \\ predicted | " + " | ".join(names) + " |")
            lines.append("|---|" + "|".join("---" for _ in names) + "|")
            for name, row in zip(names, matrix):
                lines.append(f"| **{name}** | " + " | ".join(str(int(v)) for v in row) + " |")
        lines.append("")
    lines += ["Per-split rows: [results.csv](results.csv); means: [summary.csv](summary.csv); "
              "configuration, versions and machine: [run.json](run.json).", ""]
    return "\n".join(lines)


def _slug(text: str, limit: int = 60) -> str:
    """A file-name-safe form of ``text``; a long one is cut and keeps a hash of the whole, so that names stay
    within file-system limits and two long labels still get distinct files."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "dataset"
    if len(slug) > limit:
        slug = f"{slug[:limit - 9]}-{hashlib.sha256(str(text).encode()).hexdigest()[:8]}"
    return slug
