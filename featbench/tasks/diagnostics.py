"""The ``diagnostics`` task: what does the feature space look like? Are the classes separated?

For each (dataset, extractor, split), on the *training* features (standardised with a scaler fitted on
them, as the classifiers see them): the Fisher criterion as a trace ratio, tr(S_B) / tr(S_W) — between-class
over within-class scatter [1]_ — and the mean silhouette with cosine distance [2]_ (on a stratified sample of
at most ``max_points`` images). On the first split, a 2-D t-SNE map [3]_ of that sample (PCA to 50 dimensions
first, as van der Maaten recommends) is kept; after the run the maps of every extractor are drawn as a grid of
small plots coloured by class. The report puts the two numbers beside the classification accuracy of the same
extractor (its best classifier) and states how well the Fisher criterion ranks the extractors as accuracy
does (Spearman's rank correlation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from featbench._text import slug
from featbench._threads import one_thread
from featbench.errors import ConfigError
from featbench.registry import register_task
from featbench.tasks.base import Cell, ReportContext, Task, TaskInput

__all__ = ["Diagnostics", "fisher_trace_ratio", "stratified_sample"]

_PCA_DIMS = 50


def fisher_trace_ratio(X: np.ndarray, y: np.ndarray) -> float:
    """tr(S_B) / tr(S_W): the between-class scatter (class sizes × squared distances of the class means to the
    overall mean) over the within-class scatter (squared distances of the samples to their class mean).
    Invariant to a global scale and to rotations; ``inf`` when every class is a single point."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    between = within = 0.0
    for c in np.unique(y):
        Xc = X[y == c]
        mc = Xc.mean(axis=0)
        between += len(Xc) * float(((mc - mean) ** 2).sum())
        within += float(((Xc - mc) ** 2).sum())
    return between / within if within > 0 else float("inf")


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``n`` items, each class kept in proportion (at least one of each)."""
    y = np.asarray(y)
    if len(y) <= n:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(n * len(idx) / len(y))))
        keep.append(rng.choice(idx, min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


@register_task("diagnostics")
class Diagnostics(Task):
    """Feature-space diagnostics: Fisher criterion, cosine silhouette and a t-SNE map per extractor.

    Parameters (keys of the ``[[tasks]]`` table)
    ----------------------------------------------
    max_points : int, default 500
        Training images in the silhouette and the map (a stratified sample; t-SNE costs grow as n²).
    perplexity : float, default 30
        t-SNE's perplexity (lowered to ``(n - 1) / 3`` for small samples, as scikit-learn requires).
    tsne_iterations : int, default 500
        t-SNE's optimisation steps (the first 250 with early exaggeration; at least 250). Half of scikit-learn's
        1000: on 500 images of digits (pixels, LBP, ResNet50 features) the final KL divergence at 500 steps was
        within 1.5 % of that at 1000, at half the cost of the map, which is a picture, not a reported number.

    References
    ----------
    .. [1] Fukunaga, K. (1990). Introduction to Statistical Pattern Recognition, 2nd ed., ch. 10 (scatter
           matrices, trace criteria). Academic Press.
    .. [2] Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and validation of cluster
           analysis. J. Comput. Appl. Math. 20, 53-65.
    .. [3] van der Maaten, L., Hinton, G. (2008). Visualizing data using t-SNE. JMLR 9, 2579-2605.
    """

    description = "feature-space diagnostics on the training features: Fisher trace ratio, silhouette, t-SNE map"
    metrics = ("fisher_ratio", "silhouette")

    @classmethod
    def check_params(cls, params: dict) -> dict:
        unknown = sorted(set(params) - {"max_points", "perplexity", "tsne_iterations"})
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} for task 'diagnostics'; accepted: max_points, perplexity, "
                              "tsne_iterations")
        points = params.get("max_points", 500)
        if isinstance(points, bool) or not isinstance(points, int) or not 10 <= points <= 20000:
            raise ConfigError(f"max_points must be an integer in [10, 20000], got {points!r}")
        perplexity = params.get("perplexity", 30.0)
        if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float)) or not 1 <= perplexity <= 100:
            raise ConfigError(f"perplexity must be a number in [1, 100], got {perplexity!r}")
        steps = params.get("tsne_iterations", 500)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 250 <= steps <= 100000:
            raise ConfigError(f"tsne_iterations must be an integer in [250, 100000], got {steps!r}")
        return {"max_points": points, "perplexity": float(perplexity), "tsne_iterations": steps}

    def cells(self) -> list[Cell]:
        return [Cell(key=self.label, identity={"task": [self.name, self.params]},
                     fields={"classifier": "", "classifier_name": ""})]

    def run(self, cell: Cell, data: TaskInput) -> dict:
        from sklearn.metrics import silhouette_score
        from sklearn.preprocessing import StandardScaler

        X = StandardScaler().fit_transform(np.asarray(data.train, dtype=np.float64))
        y = np.asarray(data.y_train)
        rec: dict = {"fisher_ratio": fisher_trace_ratio(X, y)}
        sample = stratified_sample(y, int(self.params.get("max_points", 500)), data.seed)
        Xs, ys = X[sample], y[sample]
        # cosine distance of an all-zero row is undefined: such rows are left out of the silhouette (and counted)
        nonzero = np.linalg.norm(Xs, axis=1) > 0
        rec["silhouette_left_out"] = int((~nonzero).sum())
        with one_thread():
            rec["silhouette"] = (float(silhouette_score(Xs[nonzero], ys[nonzero], metric="cosine"))
                                 if len(np.unique(ys[nonzero])) > 1 and nonzero.sum() > len(np.unique(ys)) else None)
            if data.split_index == 0:
                rec["picture"] = json.dumps({"xy": np.round(self._map(Xs, data.seed), 3).tolist(),
                                             "labels": ys.tolist(), "class_names": data.class_names})
        return rec

    def _map(self, X: np.ndarray, seed: int) -> np.ndarray:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if X.shape[1] > _PCA_DIMS and len(X) > _PCA_DIMS:
            X = PCA(_PCA_DIMS, random_state=seed).fit_transform(X)
        if len(X) < 5:
            return np.zeros((len(X), 2))
        perplexity = min(float(self.params.get("perplexity", 30.0)), (len(X) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", max_iter=int(self.params.get("tsne_iterations", 500)),
                    random_state=seed).fit_transform(X)

    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        from scipy.stats import spearmanr

        from featbench.reporting.tables import summary_table

        ok = results[results["status"] == "ok"]
        summary = summary_table(results, cls.metrics)
        summary = summary[summary["status"] == "ok"].sort_values("fisher_ratio_mean", ascending=False)
        accuracy = _best_accuracy(ctx, dataset)
        lines = ["| extractor | Fisher tr(S_B)/tr(S_W) | silhouette (cosine) | accuracy (best classifier) | dim |",
                 "|---|---|---|---|---|"]
        for _, row in summary.iterrows():
            acc = accuracy.get((row["extractor"], row["weights"]))
            lines.append(f"| `{row['extractor']}` | {row['fisher_ratio_mean']:.3g} | {row['silhouette_mean']:.3f} | "
                         + (f"{acc:.3f}" if acc is not None else "—") + f" | {int(row['dim']):,} |")
        lines += ["", "Training features of each split, standardised as the classifiers see them: Fisher criterion "
                  "= between-class over within-class scatter (higher: classes further apart relative to their "
                  "spread); silhouette with cosine distance on a stratified sample (−1 … 1). Means over the splits."]
        pairs = [(row["fisher_ratio_mean"], accuracy[(row["extractor"], row["weights"])])
                 for _, row in summary.iterrows() if (row["extractor"], row["weights"]) in accuracy]
        if len(pairs) >= 3:
            rho, p = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
            lines += ["", f"Rank order: Spearman's ρ between the Fisher criterion and the accuracy over {len(pairs)} "
                      f"extractors = {rho:.2f} (p = {p:.2g})"
                      + ("; the Fisher criterion ranks the extractors much as accuracy does." if rho >= 0.7 else
                         "; the Fisher criterion is a poor guide to the accuracy ranking here." if rho < 0.4 else ".")]
        left = pd.to_numeric(ok.get("silhouette_left_out"), errors="coerce").fillna(0)
        if len(ok) and left.max() > 0:
            lines += ["", f"All-zero feature vectors (no cosine distance) left out of the silhouette: up to "
                      f"{int(left.max())} per sample."]
        bad = summary_table(results, cls.metrics)
        bad = bad[bad["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""] + [f"- `{r['extractor']}`: {r['status']}" for _, r in bad.iterrows()]
        label = str(results["task"].iloc[0]) if len(results) else "diagnostics"
        picture = Path("plots") / f"{slug(dataset)}_{slug(label)}_maps.png"
        if (Path(ctx.out_dir) / picture).is_file():
            lines += ["", "t-SNE maps of the training features (first split, stratified sample), one per extractor, "
                      "coloured by class:", "", f"![{dataset}: t-SNE maps per extractor]({picture.as_posix()})"]
        return lines

    def after_run(self, out_dir, records: list[dict], datasets: dict) -> None:
        from featbench.reporting.plots import map_grid

        for dataset in datasets:
            rows = [r for r in records if r.get("dataset") == dataset and r.get("status") == "ok"
                    and isinstance(r.get("picture"), str)]
            path = Path(out_dir) / "plots" / f"{slug(dataset)}_{slug(self.label)}_maps.png"
            if not rows:
                path.unlink(missing_ok=True)
                continue
            maps = {}
            for r in rows:
                key = r["extractor"] + (f" ({r['weights']})" if r.get("weights") and r["weights"] not in r["extractor"]
                                        else "")
                maps.setdefault(key, json.loads(r["picture"]))
            map_grid(maps, f"{dataset}: t-SNE of the training features, by class", path)


def _best_accuracy(ctx: ReportContext, dataset: str) -> dict:
    """(extractor, weights) → mean accuracy of its best classifier, from the run's classification rows."""
    results = getattr(ctx, "results", None)
    if results is None or "task_name" not in results:
        return {}
    cls = results[(results["dataset"] == dataset) & (results["task_name"] == "classification")
                  & (results["status"] == "ok")]
    if cls.empty:
        return {}
    means = cls.assign(accuracy=pd.to_numeric(cls["accuracy"], errors="coerce")) \
        .groupby(["extractor", "weights", "classifier"], dropna=False)["accuracy"].mean()
    return {(e, w): float(v) for (e, w), v in means.groupby(level=[0, 1]).max().items()}
