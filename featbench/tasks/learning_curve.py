"""The ``learning-curve`` task: accuracy against the number of training images per class.

With 5 labelled images per class, does HOG still lose to a CNN? For every size in ``sizes`` (images per
class) and every draw (``tries``), a k-shot training set is drawn, stratified, from the split's *training
part only*; the classifier is fitted on it and the split's whole test part is predicted. The k-shot set is
asked of the feature stage (:class:`~featbench.tasks.FeatureRequest`), so an extractor that learns something
(a codebook, a PCA, a network) is fitted on the k-shot images only, while one that learns nothing is merely
sliced. The classifier's parameter (C, k) is chosen by an inner stratified cross-validation *inside* the
k-shot set (folds = min(``inner_folds``, the smallest class count)) when every class has at least two images
there, and is the estimator's own default (C = 1, as in scikit-learn) otherwise: no image outside the k-shot
set is ever used to choose it, the leak LAION's CLIP_benchmark issue #125 describes for its few-shot probe.
``"all"`` is the split's whole training part (the classification task's setting).

Records, one per classifier: ``accuracy@<size>`` (mean over the draws), the accuracy (and the chosen value)
of every draw in ``curve`` (JSON), ``accuracy`` at the largest size (the headline) and, with ``retrieval``,
the same for the mAP of the test queries against the k-shot gallery. The report draws accuracy against
images per class (log x), one line per extractor with a band for the spread over draws, tabulates mean ±
std per size, and states where the mean curves of two extractors cross.
"""

from __future__ import annotations

import json
import math
import time
from itertools import combinations
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from featbench._text import slug
from featbench.classifiers import search_and_fit
from featbench.errors import ConfigError
from featbench.evaluation import classification_metrics
from featbench.evaluation.retrieval import retrieval_scores
from featbench.registry import CLASSIFIERS, register_task
from featbench.tasks.base import Cell, FeatureRequest, ReportContext, Task, TaskInput

__all__ = ["LearningCurve", "kshot_indices", "crossovers", "DEFAULT_SIZES"]

#: Training images per class measured when the experiment does not say.
DEFAULT_SIZES: tuple = (1, 2, 5, 10, 20, 50, "all")
_MAX_TRIES = 1000


def kshot_indices(y_train: np.ndarray, size: int, attempt: int, seed: int) -> np.ndarray:
    """Indices into the training part of a k-shot set: ``min(size, n_c)`` images of every class ``c``.

    Drawn without replacement, independently per class (in class order), by a generator seeded from
    (``seed``, ``size``, ``attempt``) only: the same training part gives the same set in every process.
    Sorted ascending.
    """
    y = np.asarray(y_train)
    rng = np.random.default_rng([int(seed) % 2**63, int(size), int(attempt)])
    chosen = [rng.choice(np.flatnonzero(y == c), min(int(size), int((y == c).sum())), replace=False)
              for c in np.unique(y)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _request_name(size: int, attempt: int) -> str:
    return f"{size}-shot/{attempt}"


def _label(size) -> str:
    return str(size)


@register_task("learning-curve")
class LearningCurve(Task):
    """Accuracy (and optionally retrieval mAP) against training images per class, several draws per size.

    Parameters (keys of the ``[[tasks]]`` table)
    ----------------------------------------------
    sizes : list of int or "all", default [1, 2, 5, 10, 20, 50, "all"]
        Training images per class. A size larger than a class has in the split's training part is capped
        at what it has (recorded in ``curve``); ``"all"`` is the whole training part.
    tries : int, default 5
        Random k-shot draws per size (``"all"`` has one).
    retrieval : bool, default false
        Also the mAP of the test images as queries against the k-shot images as gallery (cosine).

    References
    ----------
    .. [1] Perlich, C., Provost, F., Simonoff, J. S. (2003). Tree induction vs. logistic regression: a
           learning-curve analysis. JMLR 4, 211-255 (learning curves cross: which model wins depends on the
           training-set size).
    .. [2] Radford, A. et al. (2021). Learning transferable visual models from natural language supervision.
           ICML 2021, section 3.2 and figure 6 (k-shot linear probes, 1 … 16 images per class).
    .. [3] LAION CLIP_benchmark, issue #125: the few-shot linear probe chose its regularisation on validation
           data outside the k-shot set; here the choice uses the k-shot set only.
    """

    description = "accuracy vs training images per class (k-shot draws from the training part)"
    metrics = ("accuracy", "mAP")
    uses_classifiers: ClassVar[bool] = True

    @classmethod
    def check_params(cls, params: dict) -> dict:
        accepted = ("sizes", "tries", "retrieval")
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} for task 'learning-curve'; accepted: {', '.join(accepted)}")
        sizes = params.get("sizes", list(DEFAULT_SIZES))
        good = isinstance(sizes, list) and sizes and all(
            s == "all" or (isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 1_000_000) for s in sizes)
        if not good:
            raise ConfigError(f"sizes must be a non-empty list of positive integers (images per class, at most "
                              f"1000000) and/or \"all\", got {sizes!r}")
        if len(set(map(str, sizes))) != len(sizes):
            raise ConfigError(f"sizes must not repeat a value, got {sizes!r}")
        tries = params.get("tries", 5)
        if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= _MAX_TRIES:
            raise ConfigError(f"tries must be an integer in [1, {_MAX_TRIES}] (random draws per size), got {tries!r}")
        retrieval = params.get("retrieval", False)
        if not isinstance(retrieval, bool):
            raise ConfigError(f"retrieval must be true or false, got {retrieval!r}")
        ordered = sorted(s for s in sizes if s != "all") + (["all"] if "all" in sizes else [])
        return {"sizes": ordered, "tries": tries, "retrieval": retrieval}

    # -- cells and features ------------------------------------------------------------------
    @property
    def _sizes(self) -> list:
        return list(self.params.get("sizes", DEFAULT_SIZES))

    @property
    def _tries(self) -> int:
        return int(self.params.get("tries", 5))

    def cells(self) -> list[Cell]:
        out = []
        for ccfg in self.classifiers:
            identity = {"classifier": [ccfg.name, list(ccfg.grid), ccfg.scale], "task": [self.name, self.params]}
            fields = {"classifier": ccfg.label, "classifier_name": ccfg.name, "C_grid": json.dumps(list(ccfg.grid))}
            out.append(Cell(key=f"{self.label}-{ccfg.label}", identity=identity, fields=fields))
        return out

    def _draws(self, y_train: np.ndarray, seed: int):
        """(size, attempt, indices into the training part or None for the whole part) of every measurement."""
        for size in self._sizes:
            if size == "all":
                yield size, 0, None
                continue
            for attempt in range(self._tries):
                idx = kshot_indices(y_train, size, attempt, seed)
                if len(idx) == len(y_train):
                    # capped at every class: the whole training part (the split's own features), one draw only
                    yield size, attempt, None
                    break
                yield size, attempt, idx

    def feature_requests(self, train: np.ndarray, test: np.ndarray, labels: np.ndarray,
                         seed: int) -> list[FeatureRequest]:
        train, test = np.asarray(train, np.int64), np.asarray(test, np.int64)
        out = []
        for size, attempt, idx in self._draws(np.asarray(labels)[train], seed):
            if idx is not None:
                # fitted on the k-shot images only; rows: the k-shot images, then the split's test images
                out.append(FeatureRequest(_request_name(size, attempt), np.concatenate([train[idx], test]),
                                          fit_positions=train[idx]))
        return out

    # -- one cell ----------------------------------------------------------------------------
    def run(self, cell: Cell, data: TaskInput) -> dict:
        ccfg = next(c for c in self.classifiers if c.label == cell.fields["classifier"])
        clf = CLASSIFIERS.get(ccfg.name)()
        default = clf.estimator(data.seed).get_params()[clf.param]  # the estimator's own default (C = 1.0)
        retrieval = bool(self.params.get("retrieval", False))
        curve: dict[str, dict] = {}
        fit_s = 0.0
        n_fits = not_converged = 0
        for size, attempt, idx in self._draws(data.y_train, data.seed):
            if idx is None:
                X_train, y_train, X_test = data.train, data.y_train, data.test
            else:
                X = data.extra[_request_name(size, attempt)]
                if len(X) != len(idx) + len(data.y_test):
                    raise ValueError(f"requested features {_request_name(size, attempt)!r} have {len(X)} rows, "
                                     f"expected {len(idx) + len(data.y_test)}")
                X_train, y_train, X_test = X[:len(idx)], data.y_train[idx], X[len(idx):]
            counts = np.bincount(np.unique(y_train, return_inverse=True)[1])
            if counts.min() >= 2 and len(ccfg.grid) > 1:
                grid, how = list(ccfg.grid), "inner-cv"
            elif len(ccfg.grid) == 1:
                grid, how = list(ccfg.grid), "fixed"
            else:  # too few images for any fold: nothing inside the k-shot set can choose
                grid, how = [default], "default"
            t0 = time.perf_counter()
            search = search_and_fit(clf, X_train, y_train, grid, inner_folds=data.inner_folds,
                                    random_state=data.seed, scale=ccfg.scale)
            fit_s += time.perf_counter() - t0
            n_fits += search.n_fits
            not_converged += search.not_converged
            accuracy = classification_metrics(data.y_test, search.model.predict(X_test), data.n_classes)["accuracy"]
            entry = curve.setdefault(_label(size), {
                "per_class": float(np.mean(counts)), "per_class_min": int(counts.min()),
                "per_class_max": int(counts.max()), "n_train": int(len(y_train)),
                "capped": size != "all" and int(counts.min()) < int(size),
                "accuracy": [], "C": [], "chosen_by": how, **({"mAP": []} if retrieval else {})})
            entry["accuracy"].append(float(accuracy))
            entry["C"].append(search.chosen)
            if entry["chosen_by"] != how:
                entry["chosen_by"] = "mixed"
            if retrieval:
                scores = retrieval_scores(X_train, y_train, X_test, data.y_test, ks=(1,), precision_ks=(),
                                          keep_top=1).summary()
                entry["mAP"].append(float(scores["mAP"]))
        head = curve[_label(self._sizes[-1])]
        rec: dict = {
            "accuracy": float(np.mean(head["accuracy"])),
            "C": head["C"][0] if len(head["C"]) == 1 else None,
            **({"searched": clf.param} if clf.param != "C" else {}),
            "sizes": json.dumps([_label(s) for s in self._sizes]),
            "curve": json.dumps(curve),
            "classifier_fit_s": round(fit_s, 4),
            "n_fits": n_fits,
            "not_converged": not_converged,
        }
        for label, entry in curve.items():
            rec[f"accuracy@{label}"] = float(np.mean(entry["accuracy"]))
            if retrieval:
                rec[f"mAP@{label}"] = float(np.mean(entry["mAP"]))
        if retrieval:
            rec["mAP"] = float(np.mean(head["mAP"]))
        return rec

    # -- report ------------------------------------------------------------------------------
    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        ok = results[(results["status"] == "ok") & results["curve"].map(lambda v: isinstance(v, str))] \
            if "curve" in results else results.iloc[:0]
        lines: list[str] = []
        table = curve_table(ok)
        if not table.empty:
            sizes = list(dict.fromkeys(table["size"]))
            has_map = table["mAP_mean"].notna().any()
            header = ["extractor", "weights", "classifier", *[f"{s}/class" for s in sizes]]
            lines += ["Test accuracy (mean ± std over every draw of every split) by training images per class:", "",
                      "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            for key, g in table.groupby(["extractor", "weights", "classifier"], sort=False, dropna=False):
                by = g.set_index("size")
                lines.append("| " + " | ".join([f"`{key[0]}`", str(key[1] or ""), str(key[2] or ""), *[
                    (f"{by.at[s, 'accuracy_mean']:.3f} ± {by.at[s, 'accuracy_std']:.3f}" if s in by.index else "—")
                    for s in sizes]]) + " |")
            if has_map:
                head = [h for h in header if h != "classifier"]
                lines += ["", "Retrieval mAP of the test images against the k-shot images as gallery (cosine), "
                          "mean ± std. A larger gallery holds more images of each query's class to rank first, so "
                          "mAP falls as the size grows: compare extractors at one size, not sizes.", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
                for key, g in table.groupby(["extractor", "weights"], sort=False, dropna=False):
                    # the same for every classifier: the first one's
                    by = g.drop_duplicates("size").set_index("size")
                    lines.append("| " + " | ".join([f"`{key[0]}`", str(key[1] or ""), *[
                        (f"{by.at[s, 'mAP_mean']:.3f} ± {by.at[s, 'mAP_std']:.3f}" if s in by.index else "—")
                        for s in sizes]]) + " |")
            draws = table.groupby("size", sort=False)["draws"].max()
            lines += ["", "Draws per size (splits × tries): " + ", ".join(f"{s}: {int(n)}" for s, n in draws.items())
                      + ". Each k-shot set is drawn, stratified, from the split's training part only; fitted "
                      "extractors (codebooks, PCA, networks) were fitted on it, and the classifier's "
                      + _chosen_sentence(table)]
            capped = table[table["capped"]]
            if not capped.empty:
                lines += ["", "Sizes larger than a class has in the training part were capped at what it has: "
                          + "; ".join(f"{s} → {_span(g['per_class_min'].min(), g['per_class_max'].max())} per class"
                                      for s, g in capped.groupby("size", sort=False)) + "."]
            best = best_curves(table)
            label = str(results["task"].iloc[0]) if len(results) else "learning-curve"
            path = Path(ctx.out_dir) / "plots" / f"{slug(dataset)}_{slug(label)}.png"
            learning_curve_plot(best, f"{dataset}: accuracy vs training images per class", path)
            lines += ["", "Each extractor with its best classifier (highest accuracy averaged over the sizes); band: "
                      "± one standard deviation over the draws; x: images per class actually drawn (log scale).",
                      "", f"![{dataset}: learning curves]({path.relative_to(ctx.out_dir).as_posix()})", ""]
            lines += crossover_lines(best)
        bad = results[results["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            lines += [f"- `{r['extractor']}` + {r['classifier']} ({r['split']}): {r['status']}"
                      for _, r in bad.iterrows()]
        return lines


def _span(lo, hi) -> str:
    return f"{int(lo)}" if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}"


def _chosen_sentence(table: pd.DataFrame) -> str:
    how = table.groupby("size", sort=False)["chosen_by"].agg(lambda v: "/".join(sorted(set(v))))
    inner = [s for s, h in how.items() if h == "inner-cv"]
    default = [s for s, h in how.items() if "default" in h]
    fixed = [s for s, h in how.items() if h == "fixed"]
    parts = []
    if inner:
        parts.append(f"C (or k) was chosen by stratified cross-validation inside the k-shot set (folds = "
                     f"min(inner_folds, smallest class count)) at {', '.join(inner)} per class")
    if default:
        parts.append(f"at {', '.join(default)} per class (fewer than 2 images of a class: no fold possible) it is "
                     "the estimator's default (C = 1, k = 20)")
    if fixed:
        parts.append(f"at {', '.join(fixed)} per class the grid has a single value")
    return "; ".join(parts) + "."


def curve_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, extractor, weights, classifier, size): mean and std (ddof = 1) of the accuracy and
    mAP over every draw of every split, the images per class drawn (mean), the draws, caps and how C was chosen."""
    rows = []
    keys = ["dataset", "extractor", "weights", "classifier"]
    for key, g in results.groupby(keys, sort=False, dropna=False):
        per: dict[str, dict] = {}
        for text in g["curve"]:
            for size, entry in json.loads(text).items():
                p = per.setdefault(size, {"accuracy": [], "mAP": [], "per_class": [], "min": [], "max": [],
                                          "capped": False, "how": set()})
                p["accuracy"] += entry["accuracy"]
                p["mAP"] += entry.get("mAP", [])
                p["per_class"].append(entry["per_class"])
                p["min"].append(entry["per_class_min"])
                p["max"].append(entry["per_class_max"])
                p["capped"] |= bool(entry["capped"])
                p["how"].add(entry["chosen_by"])
        for size, p in per.items():
            acc, mAP = np.asarray(p["accuracy"]), np.asarray(p["mAP"])
            rows.append({**dict(zip(keys, key)), "size": size, "per_class": float(np.mean(p["per_class"])),
                         "per_class_min": min(p["min"]), "per_class_max": max(p["max"]), "capped": p["capped"],
                         "chosen_by": "/".join(sorted(p["how"])), "draws": len(acc),
                         "accuracy_mean": float(acc.mean()),
                         "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "mAP_mean": float(mAP.mean()) if len(mAP) else float("nan"),
                         "mAP_std": (float(mAP.std(ddof=1)) if len(mAP) > 1 else 0.0) if len(mAP) else float("nan")})
    return pd.DataFrame(rows)


def best_curves(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per extractor (name, with its weights when they are not in the name), the curve of its classifier with the
    highest accuracy averaged over the sizes; each a frame of per_class, accuracy_mean, accuracy_std by size,
    sorted by per_class."""
    out = {}
    for (ext, weights), g in table.groupby(["extractor", "weights"], sort=False, dropna=False):
        area = g.groupby("classifier", sort=False)["accuracy_mean"].mean()
        best = g[g["classifier"] == area.idxmax()].sort_values("per_class")
        name = ext + (f" ({weights})" if isinstance(weights, str) and weights and weights not in ext else "")
        out[name] = best.assign(best_classifier=area.idxmax())
    return out


def crossovers(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[tuple[float, int]]:
    """Where the curve ``a`` crosses ``b`` over the increasing ``x``: (x at the crossing, +1 when ``a`` is above
    ``b`` before it, -1 when below). Between two sizes the crossing is interpolated linearly in log x; equal
    values are not a crossing unless the sign differs on both sides."""
    x, d = np.asarray(x, float), np.asarray(a, float) - np.asarray(b, float)
    out = []
    nz = [i for i in range(len(d)) if d[i] != 0]
    for i, j in zip(nz, nz[1:]):
        if np.sign(d[i]) != np.sign(d[j]):
            if j == i + 1:
                t = d[i] / (d[i] - d[j])
                at = float(math.exp(math.log(x[i]) + t * (math.log(x[j]) - math.log(x[i]))))
            else:  # equal at the sizes between: they cross there
                at = float(np.exp(np.mean(np.log(x[i + 1:j]))))
            out.append((at, int(np.sign(d[i]))))
    return out


def crossover_lines(curves: dict[str, pd.DataFrame]) -> list[str]:
    """The crossing points of every pair of mean curves, in words, with the measured accuracies (± std over the
    draws) on both sides of each crossing, and whether the gaps there are within that spread."""
    if len(curves) < 2:
        return []
    said = []
    for (na, ca), (nb, cb) in combinations(curves.items(), 2):
        common = sorted(set(ca["size"]) & set(cb["size"]), key=lambda s: float(ca.set_index("size").at[s, "per_class"]))
        if len(common) < 2:
            continue
        ia, ib = ca.set_index("size").loc[common], cb.set_index("size").loc[common]
        x, ma, mb = ia["per_class"].to_numpy(), ia["accuracy_mean"].to_numpy(), ib["accuracy_mean"].to_numpy()
        sa = ia["accuracy_std"].to_numpy() if "accuracy_std" in ia else np.zeros(len(x))
        sb = ib["accuracy_std"].to_numpy() if "accuracy_std" in ib else np.zeros(len(x))
        found = crossovers(x, ma, mb)
        if not found:
            continue
        names = {1: na, -1: nb}
        ahead = [found[0][1]] + [-sign for _, sign in found]  # who is ahead before, between and after
        if len(found) == 1:
            text = (f"`{names[ahead[0]]}` beats `{names[ahead[1]]}` below ≈ {found[0][0]:.3g} images per class; "
                    f"`{names[ahead[1]]}` is ahead above.")
        else:
            cuts = [f"≈ {at:.3g}" for at, _ in found]
            parts = [f"`{names[ahead[0]]}` ahead below {cuts[0]}"]
            parts += [f"`{names[ahead[i]]}` between {cuts[i - 1]} and {cuts[i]}" for i in range(1, len(found))]
            parts.append(f"`{names[ahead[-1]]}` above {cuts[-1]}")
            text = f"`{na}` and `{nb}` cross {len(found)} times: " + ", ".join(parts) + " images per class."
        sides, within = [], True
        for at, _ in found:
            for i in (int(np.flatnonzero(x < at).max()) if (x < at).any() else 0,
                      int(np.flatnonzero(x > at).min()) if (x > at).any() else len(x) - 1):
                sides.append(f"{x[i]:g}/class {ma[i]:.3f} ± {sa[i]:.3f} vs {mb[i]:.3f} ± {sb[i]:.3f}")
                within &= abs(ma[i] - mb[i]) < max(sa[i], sb[i])
        note = (" — gaps smaller than the spread over draws: where exactly they cross is not pinned down."
                if within else ".")
        said.append(f"- {text} Measured (`{na}` vs `{nb}`): " + "; ".join(dict.fromkeys(sides)) + note)
    if not said:
        return ["Crossovers: none — no two extractors' mean curves cross; their order is the same at every size."]
    pairs = len(curves) * (len(curves) - 1) // 2
    rest = pairs - len(said)
    return ["Crossovers of the mean curves (each extractor with its best classifier; interpolated in log x):", "",
            *said, *(["", (f"The other {rest} of the {pairs} pairs do not cross" if rest > 1 else
                          f"The other pair of the {pairs} does not cross") + ": their order is the same at every "
                      "size."] if rest else [])]


def learning_curve_plot(curves: dict[str, pd.DataFrame], title: str, path: Path) -> Path:
    """Mean accuracy against images per class (log x), a line per curve with a ± std band."""
    import matplotlib.pyplot as plt

    from featbench.reporting.plots import _save

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (name, c) in enumerate(curves.items()):
        x, m, s = c["per_class"].to_numpy(), c["accuracy_mean"].to_numpy(), c["accuracy_std"].to_numpy()
        colour = f"C{i % 10}"
        ax.plot(x, m, marker="o", markersize=3.5, color=colour, label=f"{name} ({c['best_classifier'].iloc[0]})")
        ax.fill_between(x, m - s, m + s, color=colour, alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ticks = sorted({float(v) for c in curves.values() for v in c["per_class"]})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("test accuracy (mean ± std over draws)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)
