"""Records → ``results.csv``, ``summary.csv``, ``report.md``, plots and ``run.json``, written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from featbench._io import atomic_write_json, atomic_write_text
from featbench.errors import FeatbenchError
from featbench.registry import TASKS
from featbench.reporting.answer import overview_lines
from featbench.reporting.tables import RESULT_COLUMNS, TIMING_COLUMNS, results_table, summary_table
from featbench.tasks.base import ReportContext

log = logging.getLogger("featbench")

__all__ = ["write_reports", "render_markdown", "results_table", "summary_table", "RESULT_COLUMNS",
           "TIMING_COLUMNS"]


#: Record fields kept in the cells but left out of ``results.csv``: one number per test image (for paired
#: tests), and the retrieval picture's image positions.
CELL_ONLY_COLUMNS = ("predictions", "test_labels", "picture")


def write_reports(out_dir: str | Path, records: list[dict], run_info: dict) -> dict[str, Path]:
    """Write every report of a run into ``out_dir``; returns the paths by kind."""
    out = Path(out_dir)
    results = results_table(records)
    summary = summary_table(results, _task_metrics(results))
    paths = {
        "results": atomic_write_text(out / "results.csv", results.drop(
            columns=[c for c in CELL_ONLY_COLUMNS if c in results.columns]).to_csv(index=False)),
        "summary": atomic_write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.6g")),
    }
    paths["report"] = atomic_write_text(out / "report.md", render_markdown(results, run_info, out))
    paths["run"] = atomic_write_json(out / "run.json", run_info)
    return paths


def _task_metrics(results: pd.DataFrame) -> tuple[str, ...]:
    """The metrics the run's tasks declare (a plugin task's own ones among them)."""
    out: list[str] = []
    for name in dict.fromkeys(results["task_name"]):
        try:
            out += [m for m in TASKS.get(name).metrics if m not in out]
        except FeatbenchError:  # not installed where the report is rewritten: its columns stay in results.csv
            pass
    return tuple(out)


def render_markdown(results: pd.DataFrame, run_info: dict, out_dir: Path) -> str:
    """The human-readable report: per dataset, each task's section (tables sorted best first, costs beside)."""
    ctx = ReportContext(out_dir=Path(out_dir), run_info=run_info, results=results)
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
           "and are left out of it; run the experiment again to recompute them.**"
           + (" Left out: " + ", ".join(f"`{name}`" for name in cells["unreadable_names"]) + "."
              if cells.get("unreadable_names") else ""), ""]
          if cells.get("unreadable") else []),
        *([f"**Ran without a feature cache: {run_info['feature_cache_problem']}.**", ""]
          if run_info.get("feature_cache_problem") else []),
        "How to read it: every metric is on the test part, mean ± standard deviation over the splits. "
        "Classification: C (or k) was chosen by stratified cross-validation on the training part only; "
        "*classifier fit s* includes that search. Retrieval: the test images are the queries, the training "
        "images the gallery, an image of the same class is relevant. *p vs best* compares a row with the best "
        "row on the same splits; rows not shown to differ from the best (p ≥ 0.05) are in **bold**. "
        "*Extract ms/img* is wall time per image of `transform` (setup and `fit` apart, in *extractor fit s*). "
        "*Weights* says where a deep extractor's weights came from (`random` = untrained); it is empty for "
        "classical extractors.",
        "",
    ]
    lines += overview_lines(results)
    for dataset, d in results.groupby("dataset", sort=False):
        r = d.iloc[0]
        lines += [f"## {dataset}", ""]
        cls_rows = d[d["task"] == "classification"]
        first = cls_rows.iloc[0] if len(cls_rows) else r
        n_splits = d["split"].nunique()
        lines += [f"{r['n_images']} images, {r['n_classes']} classes; {n_splits} split(s) of "
                  f"{first['n_train']} train / {first['n_test']} test images.", ""]
        if int(r["skipped_images"] or 0):
            named = r.get("skipped_files")
            lines += [f"**{int(r['skipped_images'])} unreadable image(s) were left out of this dataset"
                      f"{': ' + named if isinstance(named, str) and named else ''}.**", ""]
        dropped = r.get("dropped_classes")
        if isinstance(dropped, str) and dropped:
            lines += [f"**Warning: class(es) left out because none of their images could be read: {dropped}. "
                      "They are not among the classes above and do not enter any metric.**", ""]
        tasks = list(dict.fromkeys(d["task"]))
        for task in tasks:
            rows = d[d["task"] == task]
            name = rows["task_name"].iloc[0]
            if len(tasks) > 1:
                lines += [f"### {task}", ""]
            try:
                section = TASKS.get(name).report(dataset, rows, ctx)
            except FeatbenchError as exc:  # a plugin task that is not installed where the report is rewritten
                section = [f"(no report section: {exc})"]
            except Exception as exc:  # a plugin task's section must not lose the rest of the report
                log.warning("the report section of task %r failed", task, exc_info=True)
                section = [f"(no report section: {type(exc).__name__}: {' '.join(str(exc).split())})"]
            lines += [*section, ""]
    lines += ["Per-split rows: [results.csv](results.csv); means: [summary.csv](summary.csv); "
              "configuration, versions and machine: [run.json](run.json).", ""]
    return "\n".join(lines)


