"""The ``classification`` task: accuracy of a classifier whose parameter (C, k) is searched on the training part.

For each ``[[classifiers]]`` table the features of the training images fit the classifier, with its
parameter chosen by an inner stratified cross-validation on the training part only; the test images are
predicted once. Records: accuracy, balanced accuracy, macro F1, the confusion matrix, the chosen value,
the costs, and the predicted class of every test image (for paired significance tests between rows).
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

import numpy as np
import pandas as pd

from featbench._text import fmt, fmt_count, slug, spread
from featbench.classifiers import search_and_fit
from featbench.evaluation import classification_metrics
from featbench.evaluation.significance import significance_columns
from featbench.registry import CLASSIFIERS, register_task
from featbench.tasks.base import Cell, ReportContext, Task, TaskInput

__all__ = ["Classification", "encode_labels", "decode_labels"]


def encode_labels(labels: np.ndarray) -> str:
    """Class indices as a compact string (``"3 0 7 ..."``), kept in a cell record."""
    return " ".join(map(str, np.asarray(labels, dtype=np.int64).tolist()))


def decode_labels(text: str) -> np.ndarray:
    """The inverse of :func:`encode_labels`."""
    return np.array(text.split(), dtype=np.int64) if isinstance(text, str) and text else np.zeros(0, np.int64)


@register_task("classification")
class Classification(Task):
    """Accuracy of each ``[[classifiers]]`` table, its parameter chosen by inner cross-validation.

    The inner search is a stratified k-fold (``[run] inner_folds``) on the training part of the split;
    the chosen value refits on the whole training part; the test part is predicted once [1]_.

    References
    ----------
    .. [1] Hastie, T., Tibshirani, R., Friedman, J. (2009). The Elements of Statistical Learning, 2nd ed.,
           section 7.10 (cross-validation; the test set is used once, for the final estimate).
    """

    description = "accuracy of a classifier whose C (or k) is chosen by inner cross-validation"
    metrics = ("accuracy", "balanced_accuracy", "f1_macro")
    uses_classifiers: ClassVar[bool] = True

    def cells(self) -> list[Cell]:
        out = []
        for ccfg in self.classifiers:
            # the payload of records written before tasks existed, so that their cells stay valid
            identity = {"classifier": [ccfg.name, list(ccfg.grid)] + ([ccfg.scale] if ccfg.scale != "standard" else [])}
            key = ccfg.label
            if self.name != "classification" or self.params:  # a subclass asks another question: its own cells
                identity["task"] = [self.name, self.params]
                key = f"{self.label}-{ccfg.label}"
            fields = {"classifier": ccfg.label, "classifier_name": ccfg.name, "C_grid": json.dumps(list(ccfg.grid))}
            out.append(Cell(key=key, identity=identity, fields=fields))
        return out

    def reusable(self, record: dict) -> bool:
        # records written before predictions were kept cannot be compared pairwise: recompute them (cheap)
        return isinstance(record.get("predictions"), str)

    def run(self, cell: Cell, data: TaskInput) -> dict:
        ccfg = next(c for c in self.classifiers if c.label == cell.fields["classifier"])
        clf = CLASSIFIERS.get(ccfg.name)()
        t0 = time.perf_counter()
        search = search_and_fit(clf, data.train, data.y_train, ccfg.grid, inner_folds=data.inner_folds,
                                random_state=data.seed, scale=ccfg.scale)
        model, chosen = search.model, search.chosen
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        y_pred = model.predict(data.test)
        predict_s = time.perf_counter() - t0
        m = classification_metrics(data.y_test, y_pred, data.n_classes)
        return {
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "f1_macro": m["f1_macro"],
            "confusion": json.dumps(m["confusion"]),
            "class_names": json.dumps(data.class_names),
            "C": chosen,
            **({"searched": ccfg.param} if ccfg.param != "C" else {}),
            "classifier_fit_s": round(fit_s, 4),
            # fits of the search and the refit, and those that stopped at their iteration limit
            "n_fits": search.n_fits,
            # mean inner-CV accuracy of every value searched: shows how close the choice was
            "search_scores": json.dumps({str(k): round(v, 6) for k, v in search.scores.items()}),
            "not_converged": search.not_converged,
            "predict_ms_per_image": round(1000 * predict_s / max(len(data.y_test), 1), 5),
            "predictions": encode_labels(y_pred),
            "test_labels": encode_labels(data.y_test),
        }

    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        from featbench.reporting.plots import accuracy_vs_time, confusion_plot
        from featbench.reporting.tables import summary_table

        summary = summary_table(results)
        out = ctx.out_dir
        s = slug(dataset)
        lines = []
        ok = summary[summary["status"] == "ok"].sort_values(["accuracy_mean", "extract_ms_per_image"],
                                                            ascending=[False, True])
        keys = ["extractor", "weights", "classifier"]
        sig = significance_columns(results, "accuracy", keys, [tuple(r) for r in ok[keys].itertuples(index=False)])
        deep = bool(pd.to_numeric(ok["n_params"], errors="coerce").notna().any())
        header = ["#", "extractor", "weights", "classifier", "accuracy", "p vs best", "balanced acc.", "macro F1",
                  "dim", *(["params", "GFLOPs/img"] if deep else []),
                  "extract ms/img", "images/s", "extractor fit s", "classifier fit s", "predict ms/img", "chosen"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        most = int(ok["splits"].max()) if len(ok) else None
        for i, (_, row) in enumerate(ok.iterrows(), 1):
            p, tied = sig.get((row["extractor"], row["weights"], row["classifier"]), ("—", False))
            lines.append("| " + " | ".join([
                str(i), f"`{row['extractor']}`", row["weights"] or "", row["classifier"],
                f"{'**' if tied else ''}{row['accuracy_mean']:.3f}{spread(row, 'accuracy', most)}{'**' if tied else ''}",
                p, f"{row['balanced_accuracy_mean']:.3f}", f"{row['f1_macro_mean']:.3f}", fmt_count(row["dim"]),
                *([fmt_count(row["n_params"]), fmt(row["gflops_per_image"])] if deep else []),
                fmt(row["extract_ms_per_image"]), fmt(row["images_per_s"]), fmt(row["extractor_fit_s"]),
                fmt(row["classifier_fit_s"]), fmt(row["predict_ms_per_image"]), row["C_chosen"],
            ]) + " |")
        if sig:
            lines += ["", "**Bold**: statistically tied with the best row (p ≥ 0.05; *p vs best*: Nadeau–Bengio "
                      "corrected resampled t-test over the splits, exact McNemar test on a single split)."]
        family_line = _family_gap_line(ok, sig)
        if family_line:
            lines += ["", family_line]
        bad = summary[summary["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            for _, row in bad.iterrows():
                lines.append(f"- `{row['extractor']}` + {row['classifier']}: {row['status']}")
        lines += ["", _convergence_line(results)]
        codebooks = _codebook_line(results)
        if codebooks:
            lines += ["", codebooks]
        empty = ok[pd.to_numeric(ok["empty_features"], errors="coerce") > 0]
        if not empty.empty:
            lines += ["", "Images whose feature vector is all zeros (e.g. no keypoints found), per split:", ""]
            for _, row in empty.drop_duplicates("extractor").iterrows():
                lines.append(f"- `{row['extractor']}`: up to {int(row['empty_features'])} of "
                             f"{int(row['n_train']) + int(row['n_test'])}")
        time_plot = accuracy_vs_time(summary, f"{dataset}: accuracy vs extraction cost",
                                     out / "plots" / f"{s}_accuracy_vs_time.png").relative_to(out)
        lines += ["", f"![{dataset}: accuracy vs extraction time]({time_plot.as_posix()})"]
        if not ok.empty:
            best = ok.iloc[0]
            rows = results[(results["extractor"] == best["extractor"]) & (results["classifier"] == best["classifier"])
                           & (results["weights"] == best["weights"]) & (results["status"] == "ok")]
            matrix = np.sum([np.array(json.loads(c)) for c in rows["confusion"]], axis=0)
            names = json.loads(rows["class_names"].iloc[0])
            path = confusion_plot(matrix, names, f"{dataset}: {best['extractor']} + {best['classifier']} "
                                  "(summed over splits)", out / "plots" / f"{s}_confusion.png").relative_to(out)
            lines += ["", f"Best row: `{best['extractor']}` + {best['classifier']}. Confusion matrix summed over "
                      "splits (rows: true class, columns: predicted):", "",
                      f"![{dataset} confusion matrix]({path.as_posix()})", ""]
            lines.append("| true \\ predicted | " + " | ".join(names) + " |")
            lines.append("|---|" + "|".join("---" for _ in names) + "|")
            for name, r in zip(names, matrix):
                lines.append(f"| **{name}** | " + " | ".join(str(int(v)) for v in r) + " |")
        return lines


def _family_gap_line(ok: pd.DataFrame, sig: dict) -> str | None:
    """Best classical row against best deep row, with the gap in points and its significance test.

    ``ok`` is sorted best first, so one of the two is the best row and the other's *p vs best* is their test.
    """
    if ok.empty or "family" not in ok or not {"classical", "deep"} <= set(ok["family"]):
        return None
    best = ok.iloc[0]
    other = ok[ok["family"] != best["family"]].iloc[0]

    def name(r) -> str:
        w = f" ({r['weights']})" if r["weights"] else ""
        return f"`{r['extractor']}`{w} + {r['classifier']} {r['accuracy_mean']:.3f}{spread(r, 'accuracy')}"

    classical, deep = (best, other) if best["family"] == "classical" else (other, best)
    gap = 100 * (best["accuracy_mean"] - other["accuracy_mean"])
    p, tied = sig.get((other["extractor"], other["weights"], other["classifier"]), ("—", False))
    if p in ("—", "best"):
        test = "no significance test (one split without predictions, or a single row)"
    else:
        p_text = f"p {p}" if str(p).startswith("<") else f"p = {p}"
        test = f"{p_text}: not shown to differ" if tied else f"{p_text}: a significant difference"
    verdict = (f"the two are level ({test})" if round(gap, 1) == 0
               else f"the {best['family']} row is {gap:.1f} points ahead ({test})")
    return f"Classical vs deep: best classical row {name(classical)}; best deep row {name(deep)} — {verdict}."


def _codebook_line(results: pd.DataFrame) -> str | None:
    """How many vocabulary fits (k-means, GMM) of the encoded extractors stopped early (ConvergenceWarning)."""
    if "codebook_not_converged" not in results.columns:
        return None
    per = results.drop_duplicates([c for c in ("dataset", "extractor", "split") if c in results.columns])
    counts = pd.to_numeric(per["codebook_not_converged"], errors="coerce")
    rows = per[counts.notna()].assign(nc=counts[counts.notna()])
    if rows.empty:
        return None
    if not rows["nc"].any():
        return (f"Codebooks (k-means / GMM vocabularies): all {len(rows)} fitted vocabularies converged.")
    bad = rows[rows["nc"] > 0].groupby("extractor", sort=False)["nc"].sum()
    where = "; ".join(f"`{e}`: {int(n)}" for e, n in bad.items())
    return (f"**Codebooks that did not converge: {int(rows['nc'].gt(0).sum())} of {len(rows)}** (k-means / GMM "
            f"stopped at max_iter or found fewer distinct words than asked): {where}.")


def _convergence_line(results: pd.DataFrame) -> str:
    """How many classifier fits stopped at their iteration limit (ConvergenceWarning), per row."""
    rows = results[results["status"] == "ok"]
    if "not_converged" not in rows.columns or pd.to_numeric(rows["not_converged"], errors="coerce").isna().all():
        return "Non-converged fits: not counted (cells written by featbench before 0.2)."
    counts = pd.to_numeric(rows["not_converged"], errors="coerce").fillna(0)
    fits = int(pd.to_numeric(rows.get("n_fits"), errors="coerce").fillna(0).sum())
    if not counts.any():
        return f"Non-converged fits: none of {fits:,} (every fit of the searches and refits converged)."
    bad = rows.assign(nc=counts)[counts > 0].groupby(["extractor", "classifier"], sort=False)["nc"].sum()
    where = "; ".join(f"`{e}` + {c}: {int(n)}" for (e, c), n in bad.items())
    return (f"**Non-converged fits: {int(counts.sum()):,} of {fits:,}** (stopped at their iteration limit; "
            f"their numbers may change with the machine): {where}.")

