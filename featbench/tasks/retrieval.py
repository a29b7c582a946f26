"""The ``retrieval`` task: which features find *similar* images? Content-based image retrieval.

Per split, the training images are the gallery and the test images the queries; a gallery image is
relevant to a query when it has the query's class. Images are ranked by cosine similarity of their
L2-normalised features (optionally PCA-whitened, the whitening fitted on the gallery only). Records:
mean average precision, recall@k for k = 1, 5, 10 (a query scores 1 when at least one relevant image is in
its top k, as LAION's CLIP_benchmark defines it), precision@10 and the query time per image. The report
shows a table per dataset sorted by mAP and, for four fixed test queries, the top five gallery images of
every extractor, right or wrong class marked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from featbench._text import fmt, fmt_count, slug, spread
from featbench.errors import ConfigError
from featbench.evaluation.retrieval import retrieval_scores
from featbench.evaluation.significance import significance_columns
from featbench.registry import register_task
from featbench.tasks.base import Cell, ReportContext, Task, TaskInput

__all__ = ["Retrieval", "PICTURE_QUERIES", "PICTURE_TOP"]

#: Queries shown in the picture, and gallery images shown per query.
PICTURE_QUERIES = 4
PICTURE_TOP = 5
_METRICS = ("mAP", "recall@1", "recall@5", "recall@10", "precision@10")


def picture_queries(y_test: np.ndarray, n_classes: int, n: int = PICTURE_QUERIES) -> np.ndarray:
    """Indices (into the test part) of ``n`` fixed queries: the first test image of ``n`` classes spread evenly
    over the classes the test part has — the same for every extractor, since they share the split."""
    present = np.unique(y_test)
    picked = present[np.unique(np.round(np.linspace(0, len(present) - 1, min(n, len(present)))).astype(int))]
    return np.array([int(np.flatnonzero(y_test == c)[0]) for c in picked], dtype=np.int64)


@register_task("retrieval")
class Retrieval(Task):
    """Content-based image retrieval on cosine similarity: mAP, recall@k, precision@10.

    Parameters (keys of the ``[[tasks]]`` table)
    ----------------------------------------------
    whiten : bool, default false
        PCA-whiten the features first, the PCA fitted on the gallery (training images) only [2]_.

    References
    ----------
    .. [1] Manning, C. D., Raghavan, P., Schütze, H. (2008). Introduction to Information Retrieval,
           chapter 8 (average precision, precision at k). Cambridge University Press.
    .. [2] Jégou, H., Chum, O. (2012). Negative evidences and co-occurrences in image retrieval: the benefit
           of PCA and whitening. ECCV 2012.
    .. [3] Babenko, A., Slesarev, A., Chigorin, A., Lempitsky, V. (2014). Neural codes for image retrieval.
           ECCV 2014 (CNN activations as retrieval descriptors).
    .. [4] LAION CLIP_benchmark, ``clip_benchmark/metrics/zeroshot_retrieval.py`` (recall@k: at least one
           relevant item in the top k).
    """

    description = "content-based image retrieval: queries = test images, gallery = training images, cosine"
    metrics = _METRICS

    @classmethod
    def check_params(cls, params: dict) -> dict:
        unknown = sorted(set(params) - {"whiten"})
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} for task 'retrieval'; accepted: whiten")
        whiten = params.get("whiten", False)
        if not isinstance(whiten, bool):
            raise ConfigError(f"whiten must be true or false, got {whiten!r}")
        return {"whiten": whiten}

    def cells(self) -> list[Cell]:
        similarity = "cosine+whitening" if self.params.get("whiten") else "cosine"
        return [Cell(key=self.label, identity={"task": [self.name, self.params]},
                     fields={"classifier": similarity, "classifier_name": similarity})]

    def run(self, cell: Cell, data: TaskInput) -> dict:
        t0 = time.perf_counter()
        result = retrieval_scores(data.train, data.y_train, data.test, data.y_test, ks=(1, 5, 10),
                                  precision_ks=(10,), whiten=bool(self.params.get("whiten")), keep_top=PICTURE_TOP)
        seconds = time.perf_counter() - t0
        summary = result.summary()
        rec = {m: float(summary[m]) for m in _METRICS if m in summary}
        rec["query_ms_per_image"] = round(1000 * seconds / max(len(data.y_test), 1), 5)
        rec["queries_without_relevant"] = int(summary.get("n_without_relevant", 0))
        if data.split_index == 0:  # the picture: same queries for every extractor (they share the split)
            q = picture_queries(data.y_test, data.n_classes)
            rec["picture"] = json.dumps({
                "queries": data.test_positions[q].tolist(),
                "query_labels": data.y_test[q].tolist(),
                "top": data.train_positions[result.top[q]].tolist(),
                "top_labels": data.y_train[result.top[q]].tolist(),
            })
        return rec

    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        from featbench.reporting.tables import summary_table

        summary = summary_table(results)
        ok = summary[summary["status"] == "ok"].sort_values(["mAP_mean", "extract_ms_per_image"],
                                                            ascending=[False, True])
        keys = ["extractor", "weights", "classifier"]
        sig = significance_columns(results, "mAP", keys, [tuple(r) for r in ok[keys].itertuples(index=False)])
        header = ["#", "extractor", "weights", "similarity", "mAP", "p vs best", "recall@1", "recall@5", "recall@10",
                  "precision@10", "dim", "extract ms/img", "query ms/img"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        most = int(ok["splits"].max()) if len(ok) else None
        for i, (_, row) in enumerate(ok.iterrows(), 1):
            p, tied = sig.get((row["extractor"], row["weights"], row["classifier"]), ("—", False))
            bold = "**" if tied else ""
            lines.append("| " + " | ".join([
                str(i), f"`{row['extractor']}`", row["weights"] or "", row["classifier"],
                f"{bold}{row['mAP_mean']:.3f}{spread(row, 'mAP', most)}{bold}", p,
                *(f"{row[f'{m}_mean']:.3f}" for m in _METRICS[1:]), fmt_count(row["dim"]),
                fmt(row["extract_ms_per_image"]), fmt(row["query_ms_per_image"]),
            ]) + " |")
        lines += ["", "mAP: mean over queries of average precision (the area under the query's precision-recall "
                  "curve over the whole gallery); recall@k: share of queries with at least one image of their class "
                  "in the top k; precision@10: images of the query's class among the top 10, divided by 10. **Bold**: not "
                  "shown to differ from the best mAP (corrected resampled t-test over the splits, p ≥ 0.05)."]
        bad = summary[summary["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            lines += [f"- `{row['extractor']}`: {row['status']}" for _, row in bad.iterrows()]
        good = results[results["status"] == "ok"]
        without = pd.to_numeric(good.get("queries_without_relevant"), errors="coerce").fillna(0)
        if len(good) and without.max() > 0:
            lines += ["", f"Queries with no image of their class in the gallery (left out of every mean): up to "
                      f"{int(without.max())} of {int(good['n_test'].max())} per split."]
        empty = good[pd.to_numeric(good["empty_features"], errors="coerce") > 0]
        if not empty.empty:
            lines += ["", "Images whose feature vector is all zeros (similarity 0 to every image), per split:", ""]
            lines += [f"- `{row['extractor']}`: up to {int(row['empty_features'])} of "
                      f"{int(row['n_train']) + int(row['n_test'])}" for _, row in empty.drop_duplicates("extractor").iterrows()]
        label = str(results["task"].iloc[0]) if len(results) else "retrieval"
        picture = Path("plots") / _picture_name(dataset, label)
        drawn = good["picture"].map(lambda v: isinstance(v, str)).any() if "picture" in good else False
        if drawn and (Path(ctx.out_dir) / picture).is_file():
            n = len(json.loads(next(v for v in good["picture"] if isinstance(v, str)))["queries"])
            lines += ["", f"{n} fixed test queries (left, framed in blue) and the {PICTURE_TOP} most similar gallery "
                      "images each extractor finds (green frame: same class as the query, red: another class); "
                      "first split:", "", f"![{dataset}: most similar images per extractor]({picture.as_posix()})"]
        return lines

    def after_run(self, out_dir, records: list[dict], datasets: dict) -> None:
        from featbench.reporting.plots import retrieval_picture

        for dataset, images in datasets.items():
            rows = [r for r in records if r.get("dataset") == dataset and r.get("status") == "ok"
                    and isinstance(r.get("picture"), str)]
            path = Path(out_dir) / "plots" / _picture_name(dataset, self.label)
            if not rows or not json.loads(rows[0]["picture"])["queries"]:
                path.unlink(missing_ok=True)  # no picture of an earlier run stays linked
                continue
            shown = {}
            for r in rows:
                key = r["extractor"] + (f" ({r['weights']})" if r.get("weights") else "")
                shown.setdefault(key, json.loads(r["picture"]))
            retrieval_picture(images, shown, f"{dataset}: most similar gallery images ({self.label})", path)


def _picture_name(dataset: str, label: str) -> str:
    return f"{slug(dataset)}_{slug(label)}.png"
