"""Formatting shared by the report sections: numbers, counts, file-name slugs, the *p vs best* column."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["fmt", "fmt_count", "slug", "significance_columns"]


def fmt(x, digits: int = 3) -> str:
    """A number as a table shows it: ``—`` for missing, thousands separators above 100."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "—"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def fmt_count(x) -> str:
    """A count (dimension, parameters): ``12,544`` or ``23.59 M``."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x):
        return "—"
    return f"{x / 1e6:.2f} M" if x >= 1e5 else f"{int(x):,}"


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe form of ``text``; a long one is cut and keeps a hash of the whole, so that names stay
    within file-system limits and two long labels still get distinct files."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "dataset"
    if len(s) > limit:
        s = f"{s[:limit - 9]}-{hashlib.sha256(str(text).encode()).hexdigest()[:8]}"
    return s


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def significance_columns(results: pd.DataFrame, metric: str, keys: Sequence[str],
                         higher_is_better: bool = True) -> dict[tuple, tuple[str, bool]]:
    """For one dataset's rows of one task: row key → (*p vs best* text, tied with the best).

    Rows are compared with the best row on the same splits (:func:`featbench.evaluation.significance.
    compare_with_best`): the corrected resampled t-test over two or more splits, the exact McNemar test on
    the per-image correctness of a single split (from the cells' ``predictions`` and ``test_labels``).
    """
    from featbench.evaluation.significance import compare_with_best

    ok = results[results["status"] == "ok"]
    if ok.empty:
        return {}
    means = ok.groupby(list(keys), sort=False, dropna=False)[metric].mean()
    order = means.sort_values(ascending=not higher_is_better, kind="stable").index
    scores: dict[tuple, dict[str, float]] = {}
    correct: dict[tuple, dict[str, np.ndarray]] = {}
    n_train: dict[str, int] = {}
    n_test: dict[str, int] = {}
    groups = {k: g for k, g in ok.groupby(list(keys), sort=False, dropna=False)}
    for key in order:
        g = groups[key]
        scores[key] = {str(r["split"]): float(r[metric]) for _, r in g.iterrows()}
        for _, r in g.iterrows():
            n_train[str(r["split"])] = int(r["n_train"])
            n_test[str(r["split"])] = int(r["n_test"])
            pred, true = r.get("predictions"), r.get("test_labels")
            if isinstance(pred, str) and isinstance(true, str):
                p = np.array(pred.split(), dtype=np.int64)
                t = np.array(true.split(), dtype=np.int64)
                if len(p) == len(t):
                    correct.setdefault(key, {})[str(r["split"])] = p == t
    out = {}
    for key, c in compare_with_best(scores, n_train=n_train, n_test=n_test, correct=correct or None,
                                    higher_is_better=higher_is_better).items():
        if c.test == "best":
            out[key] = ("best", True)
        elif math.isnan(c.p):
            out[key] = ("—", False)
        else:
            out[key] = (_p_text(c.p), bool(c.tied))
    return out
