"""The ``robustness`` task: do the textbook invariances hold? Accuracy and retrieval under corruptions.

The classifier of each ``[[classifiers]]`` table is fitted once per (dataset, extractor, split) on the clean
training features, its parameter chosen exactly as the ``classification`` task chooses it (so severity 0,
the clean test images, gives that task's accuracy for the same cell), and predicts corrupted copies of the
test images only: each corruption of :mod:`featbench.corruptions` at each severity. The corrupted copies are
asked of the feature stage as views (:class:`~featbench.tasks.FeatureRequest`): the extractor fitted on the
split's training images is reused, never refitted, and each view's features are cached, so a second
classifier or a second run extracts nothing. With ``retrieval``, the corrupted test images are also queries
against the clean training images as gallery (cosine, as the ``retrieval`` task): mAP per view.

Records (one per classifier): the clean ``accuracy`` (headline) and ``mAP``; ``corrupted_accuracy`` and
``corrupted_mAP`` (JSON: corruption → the value at each severity); their means over every view; the relative
drop from clean. The report tabulates the corruption error of Hendrycks & Dietterich against a baseline row
the experiment names (CE_c = Σ_s err(s, c) / Σ_s err_baseline(s, c), mCE = mean over c), draws accuracy
against severity for every corruption, shows what each severity looks like, and tests the textbook claims
(keypoints invariant to rotation and scale, LBP to light, which descriptor degrades least) with the numbers.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from featbench._text import slug
from featbench.classifiers import search_and_fit
from featbench.corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, VERSION, corrupt
from featbench.errors import ConfigError
from featbench.evaluation import classification_metrics
from featbench.evaluation.retrieval import retrieval_scores
from featbench.registry import CLASSIFIERS, register_task
from featbench.tasks.base import Cell, FeatureRequest, ReportContext, TaskInput
from featbench.tasks.classification import Classification, encode_labels

__all__ = ["Robustness", "view_name", "robustness_table", "corruption_errors", "resolve_baseline"]


def view_name(corruption: str, severity: int) -> str:
    """Key of a corrupted view's features in ``TaskInput.extra``."""
    return f"{corruption}@{severity}"


@register_task("robustness")
class Robustness(Classification):
    """Accuracy (and retrieval mAP) on corrupted test images, the classifier fitted on clean training images.

    Parameters (keys of the ``[[tasks]]`` table)
    ----------------------------------------------
    corruptions : list of str, default all of :data:`featbench.corruptions.CORRUPTIONS`
        ImageNet-C families (gaussian_noise, shot_noise, impulse_noise, defocus_blur, motion_blur, zoom_blur,
        brightness, contrast, pixelate, jpeg_compression, elastic_transform) and geometric ones (rotation,
        scale, translation, perspective).
    severities : list of int, default [1, 2, 3, 4, 5]
        Severities measured besides 0 (the clean images).
    baseline : str, default "pixels"
        Extractor label whose errors divide the others' in the corruption error (CE), or an extractor name
        that exactly one row has (``pixels`` finds ``pixels(size=16)``); a run without it reports no CE.
    retrieval : bool, default true
        Also the mAP of the corrupted test images as queries against the clean training images.

    References
    ----------
    .. [1] Hendrycks, D., Dietterich, T. (2019). Benchmarking neural network robustness to common corruptions
           and perturbations. ICLR 2019 (ImageNet-C; corruption error CE and mCE).
    .. [2] Lowe, D. G. (2004). Distinctive image features from scale-invariant keypoints. IJCV 60(2).
    .. [3] Rublee, E., Rabaud, V., Konolige, K., Bradski, G. (2011). ORB: an efficient alternative to SIFT or
           SURF. ICCV 2011.
    .. [4] Ojala, T., Pietikäinen, M., Mäenpää, T. (2002). Multiresolution gray-scale and rotation invariant
           texture classification with local binary patterns. IEEE TPAMI 24(7).
    .. [5] Dalal, N., Triggs, B. (2005). Histograms of oriented gradients for human detection. CVPR 2005.
    .. [6] Mikolajczyk, K., Schmid, C. (2005). A performance evaluation of local descriptors. IEEE TPAMI 27(10).
    """

    description = "accuracy and retrieval mAP on corrupted test images (classifier fitted on clean images)"
    metrics = ("accuracy", "mean_corrupted_accuracy", "relative_drop", "mAP", "mean_corrupted_mAP")
    uses_classifiers: ClassVar[bool] = True

    @classmethod
    def check_params(cls, params: dict) -> dict:
        accepted = ("corruptions", "severities", "baseline", "retrieval")
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} for task 'robustness'; accepted: {', '.join(accepted)}")
        corruptions = params.get("corruptions", list(CORRUPTIONS))
        if (not isinstance(corruptions, list) or not corruptions
                or not all(isinstance(c, str) and c in CORRUPTIONS for c in corruptions)):
            bad = [c for c in corruptions if c not in CORRUPTIONS] if isinstance(corruptions, list) else corruptions
            raise ConfigError(f"corruptions must be a non-empty list of {', '.join(CORRUPTIONS)}; got {corruptions!r}"
                              + (f" ({bad!r} unknown)" if isinstance(corruptions, list) and bad else ""))
        if len(set(corruptions)) != len(corruptions):
            raise ConfigError(f"corruptions must not repeat a name, got {corruptions!r}")
        severities = params.get("severities", list(SEVERITIES))
        if (not isinstance(severities, list) or not severities
                or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 5 for s in severities)
                or len(set(severities)) != len(severities)):
            raise ConfigError(f"severities must be a non-empty list of distinct integers in [1, 5] (0, the clean "
                              f"images, is always measured), got {severities!r}")
        baseline = params.get("baseline", "pixels")
        if not isinstance(baseline, str) or not baseline:
            raise ConfigError(f"baseline must be an extractor label (a non-empty string), got {baseline!r}")
        retrieval = params.get("retrieval", True)
        if not isinstance(retrieval, bool):
            raise ConfigError(f"retrieval must be true or false, got {retrieval!r}")
        return {"corruptions": list(corruptions), "severities": sorted(severities), "baseline": baseline,
                "retrieval": retrieval}

    @classmethod
    def check_rows(cls, params: dict, rows) -> None:
        """``baseline`` must be the label (or the extractor name) of a row the task runs on: a typo would
        otherwise show only after the whole run, as a report without corruption errors. The default
        (``pixels``) is not checked: without such a row the report says that no CE could be computed."""
        baseline = params.get("baseline")
        if baseline is None or any(baseline in row for row in rows):
            return
        labels = [label for label, _ in rows]
        close = difflib.get_close_matches(baseline, [*labels, *(name for _, name in rows)], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?" if close else ""
        raise ConfigError(f"baseline {baseline!r} is not the label or extractor name of a row this task runs on"
                          f"{hint} (rows: {', '.join(labels)})")

    # -- cells and views ---------------------------------------------------------------------
    @property
    def _views(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.params.get("corruptions", CORRUPTIONS)
                for s in self.params.get("severities", SEVERITIES)]

    def cells(self) -> list[Cell]:
        # classification's cells (one per classifier), with the corruptions' version: a changed corruption
        # recomputes the records
        return [Cell(c.key, {**c.identity, "corruptions": VERSION}, c.fields) for c in super().cells()]

    def feature_requests(self, train: np.ndarray, test: np.ndarray, labels: np.ndarray,
                         seed: int) -> list[FeatureRequest]:
        test = np.asarray(test, np.int64)
        return [FeatureRequest(view_name(c, s), test,
                               view={"corruption": c, "severity": s, "version": VERSION})
                for c, s in self._views]

    def view_image(self, image: np.ndarray, view: dict, seed: int) -> np.ndarray:
        return corrupt(np.asarray(image), view["corruption"], int(view["severity"]), seed)

    # -- one cell ----------------------------------------------------------------------------
    def run(self, cell: Cell, data: TaskInput) -> dict:
        ccfg = next(c for c in self.classifiers if c.label == cell.fields["classifier"])
        clf = CLASSIFIERS.get(ccfg.name)()
        t0 = time.perf_counter()
        # the classification task's search, on the same clean training features: severity 0 is its accuracy
        search = search_and_fit(clf, data.train, data.y_train, ccfg.grid, inner_folds=data.inner_folds,
                                random_state=data.seed, scale=ccfg.scale)
        fit_s = time.perf_counter() - t0
        model = search.model
        t0 = time.perf_counter()
        y_pred = model.predict(data.test)
        m = classification_metrics(data.y_test, y_pred, data.n_classes)
        corrupted: dict[str, list[float]] = {}
        for c, s in self._views:
            X = data.extra[view_name(c, s)]
            if X.shape != data.test.shape:
                raise ValueError(f"features of view {view_name(c, s)!r} have shape {X.shape}, expected "
                                 f"{data.test.shape}")
            corrupted.setdefault(c, []).append(float(np.mean(model.predict(X) == data.y_test)))
        predict_s = time.perf_counter() - t0
        values = [a for accs in corrupted.values() for a in accs]
        mean_corrupted = float(np.mean(values))
        rec = {
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "f1_macro": m["f1_macro"],
            "severities": json.dumps(list(self.params.get("severities", SEVERITIES))),
            "corrupted_accuracy": json.dumps(corrupted),
            "mean_corrupted_accuracy": mean_corrupted,
            "relative_drop": _relative_drop(m["accuracy"], mean_corrupted),
            "baseline": self.params.get("baseline", "pixels"),
            "views": len(self._views),
            "C": search.chosen,
            **({"searched": ccfg.param} if ccfg.param != "C" else {}),
            "classifier_fit_s": round(fit_s, 4),
            "n_fits": search.n_fits,
            "search_scores": json.dumps({str(k): round(v, 6) for k, v in search.scores.items()}),
            "not_converged": search.not_converged,
            "predict_ms_per_image": round(1000 * predict_s / max(len(data.y_test) * (1 + len(self._views)), 1), 5),
            "predictions": encode_labels(y_pred),
            "test_labels": encode_labels(data.y_test),
        }
        if self.params.get("retrieval", True):
            def mean_ap(queries: np.ndarray) -> float:
                return float(retrieval_scores(data.train, data.y_train, queries, data.y_test, ks=(1,),
                                              precision_ks=(), keep_top=1).summary()["mAP"])

            clean = mean_ap(data.test)
            maps: dict[str, list[float]] = {}
            for c, s in self._views:
                maps.setdefault(c, []).append(mean_ap(data.extra[view_name(c, s)]))
            mean_maps = float(np.mean([v for vs in maps.values() for v in vs]))
            rec.update({"mAP": clean, "corrupted_mAP": json.dumps(maps), "mean_corrupted_mAP": mean_maps,
                        "mAP_relative_drop": _relative_drop(clean, mean_maps)})
        if data.split_index == 0:  # the example strip: the first test image, with the seed its views had
            rec["picture"] = json.dumps({"position": int(data.test_positions[0])})
        return rec

    # -- report ------------------------------------------------------------------------------
    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        ok = results[(results["status"] == "ok") & results["corrupted_accuracy"].map(lambda v: isinstance(v, str))] \
            if "corrupted_accuracy" in results else results.iloc[:0]
        lines: list[str] = []
        if not ok.empty:
            baseline = resolve_baseline(ok, str(ok["baseline"].iloc[0]))
            table = robustness_table(ok, baseline)
            lines += _summary_lines(table, baseline, ok)
            lines += _ce_lines(table, baseline)
            label = str(results["task"].iloc[0]) if len(results) else "robustness"
            grid = Path(ctx.out_dir) / "plots" / f"{slug(dataset)}_{slug(label)}_severity.png"
            severity_grid(per_view_means(ok, "corrupted_accuracy"), f"{dataset}: accuracy vs severity", grid,
                          "accuracy", json.loads(ok["severities"].iloc[0]))
            lines += ["", "Accuracy against severity for every corruption (mean over the splits; severity 0: clean "
                      "test images), a line per extractor:", "",
                      f"![{dataset}: accuracy vs severity]({grid.relative_to(ctx.out_dir).as_posix()})"]
            strip = Path("plots") / _strip_name(dataset, label)
            if (Path(ctx.out_dir) / strip).is_file():
                shown = ", ".join(map(str, [0, *json.loads(ok["severities"].iloc[0])]))
                lines += ["", "What the severities look like: the first test image of the first split, each "
                          f"corruption (rows) at severities {shown} (columns), as the extractors saw it:", "",
                          f"![{dataset}: corruptions by severity]({strip.as_posix()})"]
            lines += ["", *claim_lines(ok)]
            lines += ["", *_cost_lines(ok)]
        bad = results[results["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            lines += [f"- `{r['extractor']}` + {r['classifier']} ({r['split']}): {r['status']}"
                      for _, r in bad.iterrows()]
        return lines

    def after_run(self, out_dir, records: list[dict], datasets: dict) -> None:
        from featbench.features import _digest  # the seed the feature stage gave the image's views

        for dataset, images in datasets.items():
            rows = [r for r in records if r.get("dataset") == dataset and r.get("status") == "ok"
                    and isinstance(r.get("picture"), str)]
            path = Path(out_dir) / "plots" / _strip_name(dataset, self.label)
            if not rows:
                path.unlink(missing_ok=True)
                continue
            pos = json.loads(rows[0]["picture"])["position"]
            seed = int(_digest(pos)[:8], 16)
            severities = json.loads(rows[0]["severities"])
            names = list(json.loads(rows[0]["corrupted_accuracy"]))
            example_strip(np.asarray(images[pos]), names, severities, seed,
                          f"{dataset}: test image {pos} corrupted", path)


def _strip_name(dataset: str, label: str) -> str:
    return f"{slug(dataset)}_{slug(label)}_examples.png"


def _relative_drop(clean: float, corrupted: float) -> float:
    return float((clean - corrupted) / clean) if clean > 0 else float("nan")


def _row_name(extractor: str, weights, classifier: str, classifiers: int) -> str:
    name = extractor + (f" ({weights})" if isinstance(weights, str) and weights and weights not in extractor else "")
    return name + (f" + {classifier}" if classifiers > 1 else "")


def per_view_means(rows: pd.DataFrame, column: str) -> dict[str, dict[str, np.ndarray]]:
    """Per row (extractor, weights, classifier, in the rows' order): corruption → the mean over the splits at
    severities 0, s1, s2, … (0: the clean value, ``accuracy`` or ``mAP``)."""
    clean = "accuracy" if column == "corrupted_accuracy" else "mAP"
    n_classifiers = rows["classifier"].nunique()
    out: dict[str, dict[str, np.ndarray]] = {}
    for (ext, weights, classifier), g in rows.groupby(["extractor", "weights", "classifier"], sort=False,
                                                      dropna=False):
        per = [json.loads(v) for v in g[column] if isinstance(v, str)]
        if not per:
            continue
        base = pd.to_numeric(g[clean], errors="coerce").to_numpy()
        out[_row_name(ext, weights, classifier, n_classifiers)] = {
            c: np.concatenate([[np.nanmean(base)], np.mean([p[c] for p in per], axis=0)]) for c in per[0]}
    return out


def resolve_baseline(rows: pd.DataFrame, baseline: str) -> str:
    """The extractor label ``baseline`` names: itself when a row has that label, else the one label of the rows
    whose extractor is registered under that name (``pixels`` → ``pixels(size=16)``); unchanged otherwise."""
    if (rows["extractor"] == baseline).any() or "extractor_name" not in rows:
        return baseline
    labels = list(dict.fromkeys(rows.loc[rows["extractor_name"] == baseline, "extractor"]))
    return str(labels[0]) if len(labels) == 1 else baseline


def corruption_errors(err: dict[str, np.ndarray], err_base: dict[str, np.ndarray]) -> dict[str, float]:
    """CE_c = Σ_s err(s, c) / Σ_s err_baseline(s, c) for every corruption c (NaN when the baseline never
    errs on c), Hendrycks & Dietterich (2019), eq. 1 with the baseline in place of AlexNet."""
    out = {}
    for c, e in err.items():
        denominator = float(np.sum(err_base[c])) if c in err_base else float("nan")
        out[c] = float(np.sum(e)) / denominator if denominator > 0 else float("nan")
    return out


def robustness_table(rows: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per (dataset, extractor, weights, classifier): mean ± std over the splits of the clean accuracy,
    mean corrupted accuracy, relative drop, mCE against ``baseline`` (same classifier and split; NaN without
    it), the CE of each corruption (mean over splits) and the same for retrieval mAP when recorded."""
    keys = ["dataset", "extractor", "weights", "classifier"]
    base = {(r["dataset"], r["classifier"], r["split"]): json.loads(r["corrupted_accuracy"])
            for _, r in rows[rows["extractor"] == baseline].iterrows()}
    out = []
    for key, g in rows.groupby(keys, sort=False, dropna=False):
        per_split: dict[str, list] = {"clean": [], "corrupted": [], "drop": [], "mCE": [], "map_clean": [],
                                      "map_corrupted": [], "map_drop": []}
        ce_by: dict[str, list] = {}
        base_splits = 0
        undefined: set[str] = set()
        for _, r in g.iterrows():
            acc = json.loads(r["corrupted_accuracy"])
            per_split["clean"].append(float(r["accuracy"]))
            per_split["corrupted"].append(float(r["mean_corrupted_accuracy"]))
            per_split["drop"].append(float(r["relative_drop"]))
            b = base.get((r["dataset"], r["classifier"], r["split"]))
            if b is not None:
                base_splits += 1
                ce = corruption_errors({c: 1 - np.asarray(v) for c, v in acc.items()},
                                       {c: 1 - np.asarray(v) for c, v in b.items()})
                # a corruption on which the baseline made no error has no CE: left out of the mean, and named
                defined = [v for v in ce.values() if np.isfinite(v)]
                undefined |= {c for c, v in ce.items() if not np.isfinite(v)}
                if defined:
                    per_split["mCE"].append(float(np.mean(defined)))
                for c, v in ce.items():
                    ce_by.setdefault(c, []).append(v)
            if isinstance(r.get("corrupted_mAP"), str):
                per_split["map_clean"].append(float(r["mAP"]))
                per_split["map_corrupted"].append(float(r["mean_corrupted_mAP"]))
                per_split["map_drop"].append(float(r["mAP_relative_drop"]))
        row = dict(zip(keys, key))
        row["splits"] = len(g)
        for name, values in per_split.items():
            v = np.asarray(values, float)
            row[f"{name}_mean"] = float(np.mean(v)) if len(v) else float("nan")
            row[f"{name}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else (0.0 if len(v) else float("nan"))
        row["mCE_splits"] = base_splits
        row["CE_undefined"] = ", ".join(sorted(undefined))
        for c, v in ce_by.items():
            finite = [x for x in v if np.isfinite(x)]
            row[f"CE:{c}"] = float(np.mean(finite)) if finite else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return "—" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _summary_lines(table: pd.DataFrame, baseline: str, rows: pd.DataFrame) -> list[str]:
    has_ce = table["mCE_mean"].notna().any()
    has_map = table["map_clean_mean"].notna().any()
    order = table.sort_values(["mCE_mean" if has_ce else "drop_mean", "corrupted_mean"], ascending=[True, False],
                              na_position="last")
    header = ["#", "extractor", "weights", "classifier", "clean accuracy", "mean corrupted accuracy",
              "relative drop", f"mCE (baseline `{baseline}`)",
              *(["clean mAP", "mean corrupted mAP", "mAP relative drop"] if has_map else []), "splits"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for i, (_, r) in enumerate(order.iterrows(), 1):
        lines.append("| " + " | ".join([
            str(i), f"`{r['extractor']}`", str(r["weights"] or ""), str(r["classifier"]),
            _pm(r["clean_mean"], r["clean_std"]), _pm(r["corrupted_mean"], r["corrupted_std"]),
            _pm(r["drop_mean"], r["drop_std"]), _pm(r["mCE_mean"], r["mCE_std"]),
            *([_pm(r["map_clean_mean"], r["map_clean_std"]), _pm(r["map_corrupted_mean"], r["map_corrupted_std"]),
               _pm(r["map_drop_mean"], r["map_drop_std"])] if has_map else []),
            str(int(r["splits"]))]) + " |")
    views = json.loads(rows["corrupted_accuracy"].iloc[0])
    severities = json.loads(rows["severities"].iloc[0])
    n_test = int(pd.to_numeric(rows["n_test"], errors="coerce").max()) if "n_test" in rows else 0
    lines += ["", f"Sorted by {'mCE' if has_ce else 'relative drop'}, best (lowest) first. {len(views)} corruptions × {len(severities)} severities "
              f"({', '.join(map(str, severities))}) of the {n_test} test images per split; the classifier was fitted "
              "once per split on the clean training features (C chosen as in the classification task) and the "
              "extractor fitted once, on the clean training images. *Relative drop*: (clean − mean corrupted) / "
              "clean. *mCE*: mean over corruptions of CE_c = Σ_s err(s, c) / Σ_s err_baseline(s, c) (Hendrycks & "
              f"Dietterich 2019) with `{baseline}` + the same classifier on the same split as the baseline "
              "(below 1: fewer errors than it). All: mean ± std over the splits."
              + (" Retrieval: corrupted test images as queries against the clean training images (cosine)."
                 if has_map else "")]
    undefined = sorted({c for v in table.get("CE_undefined", pd.Series(dtype=str)).dropna() for c in v.split(", ") if c})
    if not (rows["extractor"] == baseline).any():
        lines += ["", f"**No CE**: the run has no `{baseline}` row (the `baseline` parameter names the extractor "
                  "label whose errors divide the others')."]
    elif not has_ce:
        lines += ["", f"**No CE**: the baseline `{baseline}` made no errors under any corruption, so CE_c (errors "
                  "divided by the baseline's errors) is undefined; name a weaker baseline."]
    elif undefined:
        lines += ["", f"CE undefined on at least one split for {len(undefined)} corruption(s) on which the baseline "
                  f"`{baseline}` made no errors there ({', '.join(undefined)}): mCE is the mean over the others."]
    if has_ce and (table["mCE_splits"] < table["splits"]).any():
        short = table[table["mCE_splits"] < table["splits"]]
        lines += ["", "CE over fewer splits than measured (the baseline is missing on the others): "
                  + "; ".join(f"`{r['extractor']}` {int(r['mCE_splits'])} of {int(r['splits'])}"
                              for _, r in short.iterrows()) + "."]
    return lines


def _ce_lines(table: pd.DataFrame, baseline: str) -> list[str]:
    cols = [c for c in table.columns if c.startswith("CE:")]
    if not cols:
        return []
    order = table.sort_values("mCE_mean", na_position="last")
    names = [c[3:] for c in cols]
    header = ["extractor", "weights", "classifier", *[n.replace("_", " ") for n in names]]
    lines = ["", f"Corruption error per corruption (CE_c against `{baseline}`, mean over splits; lower is better):",
             "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, r in order.iterrows():
        lines.append("| " + " | ".join([f"`{r['extractor']}`", str(r["weights"] or ""), str(r["classifier"]),
                                         *("—" if not np.isfinite(r[c]) else f"{r[c]:.2f}" for c in cols)]) + " |")
    return lines


def _cost_lines(rows: pd.DataFrame) -> list[str]:
    """What the corrupted views cost: extracted (not refitted) once per (extractor, split), shared by the
    classifiers, and taken from the feature cache when a run had them already."""
    if "requested_features" not in rows:
        return []
    per = rows.drop_duplicates(["dataset", "extractor", "split"])
    n = pd.to_numeric(per["requested_features"], errors="coerce").fillna(0)
    computed = pd.to_numeric(per.get("requested_features_computed"), errors="coerce").fillna(0)
    fit = pd.to_numeric(per.get("requested_fit_s"), errors="coerce").fillna(0)
    extract = pd.to_numeric(per.get("requested_extract_s"), errors="coerce").fillna(0)
    return [f"Cost: {int(n.sum()):,} corrupted views ({len(per)} extractor × split pairs × {int(n.max())} views), "
            f"{int(computed.sum()):,} of them extracted by this run ({extract.sum():.1f} s of extraction) and "
            f"{int(n.sum() - computed.sum()):,} read from the feature cache; the extractors were refitted for them "
            f"{'never' if fit.sum() == 0 else f'for {fit.sum():.1f} s (a fitted extractor whose clean features came from the cache is fitted again once to transform the views)'}"
            "; the classifiers were fitted once per split on the clean training features."]


# -- the claims ---------------------------------------------------------------------------------
def _kind(extractor_name: str, params: dict) -> str:
    """What an extractor row is, for the textbook claims: keypoints, dense, hog, lbp, pixels, deep or other."""
    if extractor_name in ("sift", "orb"):
        return "dense" if params.get("mode") == "dense" else "keypoints"
    if extractor_name in ("hog", "lbp", "pixels"):
        return extractor_name
    if extractor_name in ("keras-app", "vgg16", "resnet50", "cnn"):
        return "deep"
    return "other"


def _rotation_invariant(extractor_name: str, params: dict) -> bool:
    """Descriptors designed to be rotation invariant, pooled without a spatial grid: keypoints with their
    orientation (SIFT, ORB) encoded without a spatial pyramid finer than 1x1, and uniform / ror LBP histograms
    of the whole image."""
    kind = _kind(extractor_name, params)
    if kind == "keypoints":
        return all(int(p) == 1 for p in params.get("pyramid", [1]) or [1])
    if kind == "lbp":
        return params.get("method", "uniform") in ("uniform", "ror") and int(params.get("grid", 1)) == 1
    return False


def _row_info(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (extractor, weights, classifier): kind, rotation invariance, clean accuracy and the accuracy of
    every view (mean over splits), and the same for mAP."""
    out = []
    n_classifiers = rows["classifier"].nunique()
    for (ext, weights, classifier), g in rows.groupby(["extractor", "weights", "classifier"], sort=False,
                                                      dropna=False):
        params = g["extractor_params"].iloc[0] if "extractor_params" in g else "{}"
        params = json.loads(params) if isinstance(params, str) else {}
        name = str(g["extractor_name"].iloc[0]) if "extractor_name" in g else ext
        acc = [json.loads(v) for v in g["corrupted_accuracy"]]
        maps = [json.loads(v) for v in g["corrupted_mAP"]] if "corrupted_mAP" in g and g["corrupted_mAP"].map(
            lambda v: isinstance(v, str)).all() else []
        out.append({
            "row": _row_name(ext, weights, classifier, n_classifiers), "extractor": ext, "kind": _kind(name, params),
            "invariant": _rotation_invariant(name, params),
            "clean": float(pd.to_numeric(g["accuracy"]).mean()),
            "acc": {c: np.mean([a[c] for a in acc], axis=0) for c in acc[0]},
            "map_clean": float(pd.to_numeric(g["mAP"]).mean()) if maps else float("nan"),
            "map": {c: np.mean([m[c] for m in maps], axis=0) for c in maps[0]} if maps else {},
            "n_classes": int(pd.to_numeric(g["n_classes"], errors="coerce").max()) if "n_classes" in g else 0,
        })
    return pd.DataFrame(out)


def _group_stats(info: pd.DataFrame, corruptions: list[str]) -> pd.DataFrame:
    """Per row: mean accuracy over the corruptions' views, drop in points and relative drop from clean."""
    present = [c for c in corruptions if c in info["acc"].iloc[0]]
    under = info["acc"].map(lambda a: float(np.mean([a[c] for c in present])))
    return info.assign(under=under, drop=info["clean"] - under,
                       rel=(info["clean"] - under) / info["clean"].where(info["clean"] > 0))


def _fmt_row(r) -> str:
    return f"`{r['row']}` ({r['clean']:.3f} → {r['under']:.3f}, {_pct(-r['rel'])})"


def _points(change: float) -> str:
    """A change of accuracy in percentage points, signed (−16.2 points: a drop)."""
    return f"{100 * change:+.1f} points".replace("-", "−")


def _pct(change: float) -> str:
    """A relative change as a signed percentage (−12.3 %: a drop)."""
    return "—" if not np.isfinite(change) else f"{100 * change:+.1f} %".replace("-", "−")


def claim_lines(rows: pd.DataFrame) -> list[str]:
    """Sentences that test the textbook claims with this run's numbers (mean over splits and severities)."""
    info = _row_info(rows)
    if info.empty:
        return []
    chance = 1.0 / max(int(info["n_classes"].max()), 1)
    groups = [("rotation", ["rotation"]), ("scale", ["scale"]), ("brightness/contrast", ["brightness", "contrast"]),
              ("noise", [c for c, f in FAMILIES.items() if f == "noise"]),
              ("blur", [c for c, f in FAMILIES.items() if f == "blur"])]
    measured = set(info["acc"].iloc[0])
    lines = ["**Do the textbook claims hold here?** (accuracy clean → mean over the corruption's severities, and the "
             f"relative drop; chance is {chance:.3f}. A row near chance when clean cannot drop far: read the drop "
             "beside the accuracy.)", ""]
    for title, corruptions in groups:
        present = [c for c in corruptions if c in measured]
        if not present:
            lines.append(f"- {title}: not measured in this run.")
            continue
        st = _group_stats(info, present)
        floor = chance + 0.25 * (1 - chance)  # a row closer to chance when clean has little to lose
        useful = st[st["clean"] >= floor]
        pool = useful if not useful.empty else st
        least = pool.sort_values(["rel", "under"], ascending=[True, False]).iloc[0]
        best = st.sort_values("under", ascending=False).iloc[0]
        # rel > 0: a drop; a row that gains under the corruption did not "degrade least"
        verb = "degrades least" if least["rel"] > 0 else ("unchanged" if least["rel"] == 0 else "improves most")
        lines.append(f"- **{title}** ({', '.join(present)}): {verb}: {_fmt_row(least)}"
                     + ("" if useful.empty or len(useful) == len(st)
                        else f" (of the rows with clean accuracy ≥ {floor:.3f}, a quarter of the way from chance to 1)")
                     + f"; most accurate under it: `{best['row']}` ({best['under']:.3f}).")
    # keypoint encodings vs HOG and pixels under rotation and scale
    for title in ("rotation", "scale"):
        if title not in measured:
            continue
        st = _group_stats(info, [title])
        kp, rivals = st[st["kind"] == "keypoints"], st[st["kind"].isin(["hog", "pixels"])]
        if kp.empty or rivals.empty:
            lines.append(f"- SIFT/ORB keypoints vs HOG and pixels under {title}: not tested (the run lacks "
                         f"{'keypoint' if kp.empty else 'HOG / pixel'} rows).")
            continue
        verdicts = []
        for _, k in kp.iterrows():
            beats_drop = all(k["rel"] < r["rel"] for _, r in rivals.iterrows())
            beats_acc = all(k["under"] > r["under"] for _, r in rivals.iterrows())
            verdicts.append((beats_drop, beats_acc, f"{_fmt_row(k)}: relative drop smaller than every HOG/pixel "
                             f"row's: {'yes' if beats_drop else 'no'}; accuracy under it higher than every "
                             f"HOG/pixel row's: {'yes' if beats_acc else 'no'}"))
        drop_ok = [v for v, _, _ in verdicts]
        acc_ok = [a for _, a, _ in verdicts]
        verdict = ("holds" if all(drop_ok) else "holds for some keypoint rows" if any(drop_ok) else "fails")
        lines.append(f"- **Keypoint encodings vs HOG and pixels under {title}** (claim: SIFT/ORB encodings are "
                     f"{title} invariant, HOG and pixels are not, so they lose less): {verdict}"
                     + (f"; and they are also the more accurate under it: {'yes' if all(acc_ok) else 'partly' if any(acc_ok) else 'no'}")
                     + f" — {'; '.join(t for _, _, t in verdicts)}. HOG/pixels: "
                     + ", ".join(_fmt_row(r) for _, r in rivals.iterrows()) + ".")
        weak = kp[kp["clean"] < chance + 0.25 * (1 - chance)]
        if not weak.empty:
            lines.append(f"  Caution: {', '.join(f'`{r}`' for r in weak['row'])} "
                         f"{'is' if len(weak) == 1 else 'are'} close to chance ({chance:.3f}) on clean images, so a "
                         "small drop says little about invariance here.")
        if title == "rotation" and kp["invariant"].eq(False).any():
            lines.append("  (keypoint rows with a spatial pyramid finer than 1×1 are not rotation invariant by "
                         "construction: a rotation moves descriptors between grid cells.)")
    # LBP under brightness / contrast
    light = [c for c in ("brightness", "contrast") if c in measured]
    if light:
        st = _group_stats(info, light)
        lbp, rivals = st[st["kind"] == "lbp"], st[st["kind"].isin(["hog", "pixels"])]
        if lbp.empty:
            lines.append("- LBP under brightness/contrast: not tested (no LBP row).")
        else:
            for _, r in lbp.iterrows():
                worst = max(float(np.max(r["clean"] - np.asarray(r["acc"][c]))) for c in light)  # in accuracy
                less = [_fmt_row(q) for _, q in rivals.iterrows() if r["rel"] < q["rel"]]
                more = [_fmt_row(q) for _, q in rivals.iterrows() if not r["rel"] < q["rel"]]
                if rivals.empty:
                    verdict = "not compared (no HOG/pixel row)"
                elif not more:
                    verdict = "holds: it degrades less than " + ", ".join(less)
                else:
                    verdict = ("fails: it degrades as much as or more than " + ", ".join(more)
                               + (" (less than " + ", ".join(less) + ")" if less else ""))
                lines.append(f"- **LBP under brightness/contrast** (claim: uniform LBP is invariant to monotonic "
                             f"grey-level changes): {_fmt_row(r)}, worst single view {_points(-worst)}; "
                             + verdict + ". (Clipping at 0/255 and rounding to 8 bits make these changes not strictly "
                             "monotonic: ties and saturated pixels change LBP codes.)")
    # retrieval at rotation 90 degrees
    sev = json.loads(rows["severities"].iloc[0])
    if "rotation" in measured and 4 in sev and info["map"].map(bool).all():
        i = sev.index(4)
        drop = info.assign(map90=info["map"].map(lambda m: float(m["rotation"][i])))
        drop = drop.assign(map_drop=drop["map_clean"] - drop["map90"],
                           map_rel=(drop["map_clean"] - drop["map90"]) / drop["map_clean"])
        inv, hog = drop[drop["invariant"]], drop[drop["kind"] == "hog"]
        if inv.empty or hog.empty:
            lines.append("- Retrieval under rotation 90°: not tested (the run lacks "
                         + ("a rotation-invariant row (keypoints without spatial pyramid, global uniform LBP)"
                            if inv.empty else "a HOG row") + ").")
        else:
            h = hog.iloc[0]
            parts = [f"`{r['row']}` {r['map_clean']:.3f} → {r['map90']:.3f} ({_pct(-r['map_rel'])}, "
                     f"{'smaller' if r['map_drop'] < h['map_drop'] else 'not smaller'} than HOG's)"
                     for _, r in inv.iterrows()]
            holds = all(r["map_drop"] < h["map_drop"] for _, r in inv.iterrows())
            lines.append(f"- **Retrieval under rotation 90°** (claim: a rotation-invariant descriptor loses less mAP "
                         f"than HOG): {'holds' if holds else 'fails'} — HOG `{h['row']}` {h['map_clean']:.3f} → "
                         f"{h['map90']:.3f} ({_pct(-h['map_rel'])}); " + "; ".join(parts) + ".")
            # a random ranking's mAP is about the share of each class, the same chance as accuracy's
            near = pd.concat([hog.iloc[:1], inv])
            near = near[near["map_clean"] < chance + 0.25 * (1 - chance)]
            if not near.empty:
                lines.append(f"  Caution: {', '.join(f'`{r}`' for r in near['row'])} "
                             f"{'has' if len(near) == 1 else 'have'} a clean mAP close to a random ranking's "
                             f"(about {chance:.3f}), so a small loss says little about invariance here.")
    deep = info[info["kind"] == "deep"]
    if not deep.empty and measured:
        st = _group_stats(info, sorted(measured))
        rank = st.sort_values("rel").reset_index(drop=True)
        lines.append("- **CNN embeddings** (claim: brittle to corruptions they never saw, ImageNet-C): relative drop "
                     "over all corruptions " + ", ".join(
                         f"`{r['row']}` {_pct(-r['rel'])} (rank {int(rank.index[rank['row'] == r['row']][0]) + 1}"
                         f" of {len(rank)})" for _, r in st[st["kind"] == "deep"].iterrows()) + ".")
    return lines


# -- pictures ---------------------------------------------------------------------------------
def severity_grid(curves: dict[str, dict[str, np.ndarray]], title: str, path: Path, ylabel: str,
                  severities: list[int] | None = None, columns: int = 5) -> Path:
    """Small multiples: one panel per corruption, the value against severity (0 = clean), a line per row."""
    import matplotlib.pyplot as plt

    from featbench.reporting.plots import _save

    names = list(next(iter(curves.values()))) if curves else []
    n = max(len(names), 1)
    cols = min(columns, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.2 * nrows + 0.8), sharey=True, squeeze=False)
    for k, c in enumerate(names):
        ax = axes[k // cols, k % cols]
        for i, (row, per) in enumerate(curves.items()):
            y = per[c]
            x = [0, *(severities or range(1, len(y)))][:len(y)]
            ax.plot(x, y, marker="o", markersize=2.5, linewidth=1.2, color=f"C{i % 10}", label=row,
                    linestyle="-" if i < 10 else "--")
        ax.set_title(c.replace("_", " "), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_xticks(range(0, 6))
    for k in range(len(names), nrows * cols):
        axes[k // cols, k % cols].axis("off")
    for r in range(nrows):
        axes[r, 0].set_ylabel(ylabel, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("severity", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(len(labels), 1)), fontsize=7,
               bbox_to_anchor=(0.5, -0.02 - 0.025 * ((len(labels) + 3) // 4)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def example_strip(image: np.ndarray, corruptions: list[str], severities: list[int], seed: int, title: str,
                  path: Path) -> Path:
    """A grid of ``image`` corrupted: a row per corruption, a column per severity (0 first)."""
    import matplotlib.pyplot as plt

    from featbench.reporting.plots import _save

    cols = [0, *severities]
    fig, axes = plt.subplots(len(corruptions), len(cols), figsize=(1.05 * len(cols) + 1.4, 1.05 * len(corruptions)),
                             squeeze=False)
    for i, c in enumerate(corruptions):
        for j, s in enumerate(cols):
            ax = axes[i, j]
            img = corrupt(image, c, s, seed)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"severity {s}", fontsize=7)
        axes[i, 0].set_ylabel(c.replace("_", " "), rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return _save(fig, path)
