"""The answer printed at the end of ``featbench run`` and ``featbench compare``: per dataset, the
extractors ranked by classification accuracy (each with its best classifier), the rows statistically tied
with the best, cost and dimension, and the Pareto front of accuracy against extraction cost in one sentence.
"""

from __future__ import annotations

import pandas as pd

from featbench._text import spread
from featbench.evaluation.significance import significance_columns
from featbench.reporting.tables import results_table, summary_table

__all__ = ["answer_lines", "overview_lines", "pareto_front"]

#: "within one point of the best" in the cost sentence: accuracy difference, as a fraction.
WITHIN = 0.01


def pareto_front(rows: pd.DataFrame, accuracy: str = "accuracy_mean", cost: str = "extract_ms_per_image") -> list:
    """Index labels of the rows no other row beats on both accuracy (higher) and cost (lower), cheapest first."""
    ordered = rows.sort_values([cost, accuracy], ascending=[True, False])
    front, best = [], float("-inf")
    for idx, row in ordered.iterrows():
        if row[accuracy] > best:
            front.append(idx)
            best = row[accuracy]
    return front


def _name(row) -> str:
    weights = row["weights"]
    return f"{row['extractor']} ({weights})" if weights and weights not in row["extractor"] else row["extractor"]


def answer_lines(records: list[dict], max_rows: int = 15) -> list[str]:
    """Plain-text lines: per dataset, a ranked table of the classification task and the cost sentence."""
    if not records:
        return []
    results = results_table(records)
    results = results[results["task_name"] == "classification"]
    if results.empty:
        return []
    summary = summary_table(results)
    lines: list[str] = []
    for dataset, s in summary.groupby("dataset", sort=False):
        ok = s[s["status"] == "ok"].copy()
        if ok.empty:
            continue
        # each extractor by its best classifier
        ok = ok.sort_values(["accuracy_mean", "extract_ms_per_image"], ascending=[False, True])
        best = ok.drop_duplicates(["extractor", "weights"]).reset_index(drop=True)
        keys = ["extractor", "weights", "classifier"]
        sig = significance_columns(results[results["dataset"] == dataset], "accuracy", keys,
                                   [tuple(r) for r in best[keys].itertuples(index=False)])
        splits = int(best["splits_ok"].max())
        lines += ["", f"{dataset}: {int(best['n_train'].iloc[0])} training / {int(best['n_test'].iloc[0])} test "
                      f"images, {splits} split{'s' if splits != 1 else ''}; each extractor with its best classifier, "
                      "best first"]
        header = ["#", "extractor", "classifier", "accuracy", "tied", "ms/image", "dim"]
        table = []
        for i, row in best.head(max_rows).iterrows():
            p, tied = sig.get((row["extractor"], row["weights"], row["classifier"]), ("", False))
            table.append([str(i + 1), _name(row), row["classifier"],
                          f"{row['accuracy_mean']:.3f}" + (f" ± {row['accuracy_std']:.3f}" if splits > 1 else ""),
                          "best" if i == 0 else ("tied" if tied else ""),
                          f"{row['extract_ms_per_image']:.3g}", f"{int(row['dim']):,}" if pd.notna(row["dim"]) else ""])
        widths = [max(len(r[c]) for r in [header, *table]) for c in range(len(header))]
        for r in [header, *table]:
            lines.append("  " + "  ".join(v.ljust(w) if c in (1, 2, 4) else v.rjust(w)
                                          for c, (v, w) in enumerate(zip(r, widths))))
        if len(best) > max_rows:
            lines.append(f"  ... {len(best) - max_rows} more in the report")
        if any(tied for _, tied in sig.values()):
            lines.append("  tied: not significantly different from the best (p >= 0.05; corrected t-test over the "
                         "splits, McNemar on one split)")
        lines.append("  " + _cost_sentence(best))
    return lines


def _cost_sentence(best: pd.DataFrame) -> str:
    top = best.iloc[0]
    near = best[best["accuracy_mean"] >= top["accuracy_mean"] - WITHIN]
    cheapest = near.sort_values("extract_ms_per_image").iloc[0]
    front = [_name(best.loc[i]) for i in pareto_front(best)]
    text = f"Pareto front (accuracy vs extraction cost, cheapest first): {', '.join(front)}. "
    if cheapest["extractor"] == top["extractor"] and cheapest["weights"] == top["weights"]:
        return text + f"Nothing within {100 * WITHIN:g} point of the best ({_name(top)}) is cheaper."
    ratio = top["extract_ms_per_image"] / cheapest["extract_ms_per_image"] if cheapest["extract_ms_per_image"] else \
        float("inf")
    return text + (f"Fastest within {100 * WITHIN:g} point of the best: {_name(cheapest)} "
                   f"({cheapest['accuracy_mean']:.3f}), {ratio:.3g}x cheaper than {_name(top)}.")


def overview_lines(results: pd.DataFrame) -> list[str]:
    """The report's overview: a row per extractor, a column per dataset, each cell the accuracy (mean ± std)
    of the extractor's best classifier there; the best of each column in bold. Empty without classification."""
    cls = results[(results["task_name"] == "classification") & (results["status"] == "ok")]
    if cls.empty:
        return []
    summary = summary_table(cls)
    summary = summary[summary["status"] == "ok"]
    best = (summary.sort_values("accuracy_mean", ascending=False)
            .drop_duplicates(["dataset", "extractor", "weights"]))
    datasets = list(dict.fromkeys(cls["dataset"]))
    extractors = list(dict.fromkeys(zip(cls["extractor"], cls["weights"])))
    top = best.groupby("dataset")["accuracy_mean"].max()
    lines = ["## Overview", "",
             "Classification accuracy of each extractor with its best classifier (mean ± std over the splits); "
             "the best of each dataset in **bold**. The tables per dataset below have every classifier, the "
             "significance tests and the costs.", "",
             "| extractor | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    cells = {(r["dataset"], r["extractor"], r["weights"]): r for _, r in best.iterrows()}
    most = pd.to_numeric(best["splits"], errors="coerce").groupby(best["dataset"]).max()  # datasets' protocols differ
    for ext, weights in extractors:
        row = [f"`{ext}`" + (f" ({weights})" if weights and weights not in ext else "")]
        for d in datasets:
            r = cells.get((d, ext, weights))
            if r is None:
                row.append("—")
                continue
            text = f"{r['accuracy_mean']:.3f}{spread(r, 'accuracy', most.get(d))} ({r['classifier']})"
            row.append(f"**{text}**" if r["accuracy_mean"] == top[d] else text)
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]
