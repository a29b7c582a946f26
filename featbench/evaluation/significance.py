"""Significance between extractors: paired tests of each row against the best row on the same splits.

Two tests, chosen by how many splits two rows share:

- two or more splits (repeated hold-out, repeated k-fold): the Nadeau–Bengio *corrected resampled
  t-test* on the per-split scores, which widens the variance for the overlap between training sets
  that makes the plain paired t-test far too eager to call differences significant;
- a single split (a dataset's official split): the *exact McNemar test* on the per-image
  correctness of the two rows' test predictions.

The tests are pure functions of numbers; :func:`significance_columns` pairs the rows of a task's
records (per-split scores, kept test predictions) for the report's *p vs best* column.

References
----------
.. [1] C. Nadeau and Y. Bengio, "Inference for the generalization error", Machine Learning 52,
   239–281, 2003.
.. [2] R. R. Bouckaert and E. Frank, "Evaluating the replicability of significance tests for
   comparing learning algorithms", PAKDD 2004, LNCS 3056, 3–12.
.. [3] T. G. Dietterich, "Approximate statistical tests for comparing supervised classification
   learning algorithms", Neural Computation 10(7), 1895–1923, 1998.
.. [4] Q. McNemar, "Note on the sampling error of the difference between correlated proportions
   or percentages", Psychometrika 12(2), 153–157, 1947.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["Comparison", "compare_with_best", "corrected_resampled_ttest", "mcnemar_exact", "significance_columns"]

TEST_T = "corrected t"
TEST_MCNEMAR = "McNemar"
TEST_BEST = "best"
TEST_NONE = "—"

# Differences whose spread is below this (relative to the scores' magnitude) are treated as
# constant: accuracies such as 0.83 - 0.82 and 0.73 - 0.72 differ by float rounding only.
_REL_TOL = 1e-12


def corrected_resampled_ttest(a: ArrayLike, b: ArrayLike, n_train: int, n_test: int) -> tuple[float, float]:
    """Nadeau–Bengio corrected resampled t-test of two rows' paired per-split scores.

    With ``d = a - b`` over the ``J`` shared splits,

    .. math::

        t = \\frac{\\bar d}{\\sqrt{\\left(\\frac{1}{J} + \\frac{n_{test}}{n_{train}}\\right)\\hat\\sigma^2_d}}

    where :math:`\\hat\\sigma^2_d` is the sample variance of ``d`` (``ddof=1``), and the two-sided
    p-value comes from Student's t with ``J - 1`` degrees of freedom. Without the
    ``n_test / n_train`` term this is the ordinary paired t-test (:func:`scipy.stats.ttest_rel`);
    the term accounts for the splits' overlapping training sets [1]_, [2]_. It applies to repeated
    random hold-out and, with ``J = folds × repeats``, to repeated k-fold cross-validation [2]_.

    Parameters
    ----------
    a, b : array_like, shape (J,)
        Scores (e.g. accuracies) of two rows on the same ``J`` splits, in the same order.
    n_train, n_test : int
        Number of training and test images per split (a mean when they vary by a few images).

    Returns
    -------
    t : float
        The corrected statistic; positive when ``a`` scores higher on average.
    p : float
        Two-sided p-value.

    Raises
    ------
    ValueError
        Fewer than two splits (use :func:`mcnemar_exact` on a single split), shapes that differ,
        non-finite scores, or non-positive ``n_train`` / ``n_test``.

    Notes
    -----
    When ``d`` is constant (zero variance, up to float rounding) the statistic is undefined:

    - every difference zero (identical scores): ``t = 0.0``, ``p = 1.0``;
    - a constant non-zero difference: ``t = ±inf`` (sign of the difference), ``p = 0.0`` — one row
      is better by the same amount on every split, the limit of the test as the variance goes to 0.

    References
    ----------
    .. [1] C. Nadeau and Y. Bengio, "Inference for the generalization error", Machine Learning 52,
       239–281, 2003.
    .. [2] R. R. Bouckaert and E. Frank, "Evaluating the replicability of significance tests for
       comparing learning algorithms", PAKDD 2004, LNCS 3056, 3–12.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same number of splits, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(
            f"the corrected resampled t-test needs at least 2 splits, got {a.size}; use mcnemar_exact on a single split"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores must be finite")
    if not (n_train > 0 and n_test > 0):
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    d = a - b
    j = d.size
    mean = float(d.mean())
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    if float(np.ptp(d)) <= _REL_TOL * scale:
        if abs(mean) <= _REL_TOL * scale:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0
    var = float(d.var(ddof=1))
    t = mean / math.sqrt((1.0 / j + n_test / n_train) * var)
    p = float(2.0 * stats.t.sf(abs(t), j - 1))
    return float(t), min(1.0, p)


def mcnemar_exact(correct_a: ArrayLike, correct_b: ArrayLike) -> float:
    """Exact (binomial) McNemar test of two classifiers' correctness on the same test images.

    Only the discordant images count: ``b`` = images ``a`` gets right and ``b`` gets wrong, ``c``
    = the reverse. Under the null hypothesis each discordant image goes either way with
    probability 1/2, so ``min(b, c)`` is Binomial(``b + c``, 1/2) and the two-sided p-value is
    ``min(1, 2 · BinomCDF(min(b, c); b + c, 1/2))`` [3]_, [4]_, computed with
    :func:`scipy.stats.binomtest`. It equals
    ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue``.

    Parameters
    ----------
    correct_a, correct_b : array_like of bool, shape (n_test,)
        Whether each test image is classified correctly by either row, images in the same order.

    Returns
    -------
    p : float
        Two-sided p-value; 1.0 when there is no discordant image (``b + c == 0``).

    Raises
    ------
    ValueError
        Arrays of different shapes, or not one-dimensional.

    References
    ----------
    .. [3] T. G. Dietterich, "Approximate statistical tests for comparing supervised classification
       learning algorithms", Neural Computation 10(7), 1895–1923, 1998.
    .. [4] Q. McNemar, "Note on the sampling error of the difference between correlated proportions
       or percentages", Psychometrika 12(2), 153–157, 1947.
    """
    ca = np.asarray(correct_a)
    cb = np.asarray(correct_b)
    if ca.ndim != 1 or ca.shape != cb.shape:
        raise ValueError(
            f"McNemar needs two 1-D arrays over the same test images, got shapes {ca.shape} and {cb.shape}"
        )
    ca = ca.astype(bool)
    cb = cb.astype(bool)
    b = int(np.count_nonzero(ca & ~cb))
    c = int(np.count_nonzero(~ca & cb))
    if b + c == 0:
        return 1.0
    return float(min(1.0, stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue))


@dataclass(frozen=True)
class Comparison:
    """One row compared with the best row of its (dataset, metric) table.

    Attributes
    ----------
    best : hashable
        Key of the best row.
    p : float
        Two-sided p-value of the test against the best row; NaN for the best row itself and for
        rows that cannot be compared (see ``reason``).
    test : str
        ``"corrected t"``, ``"McNemar"``, ``"best"`` (the best row) or ``"—"`` (not compared).
    n_splits : int
        Splits the row shares with the best row (for the best row: its own number of splits).
    tied : bool
        Statistically tied with the best: ``p >= alpha``. True for the best row; False when the
        row could not be compared (``p`` is NaN).
    mean_difference : float
        Mean over the shared splits of (row − best); ≤ 0 when higher is better, since the best
        has the highest mean on its own splits (it can differ in sign on a subset of them). 0.0
        for the best row, NaN with no shared split.
    statistic : float
        The corrected t (row − best) for ``"corrected t"``; NaN otherwise.
    reason : str
        Why ``p`` is NaN, or ``""``.
    """

    best: Hashable
    p: float
    test: str
    n_splits: int
    tied: bool
    mean_difference: float
    statistic: float = math.nan
    reason: str = ""


def _finite_scores(row: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for split, value in row.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[split] = value
    return out


def _mean_size(sizes: Mapping[str, int] | int, splits: list[str], what: str) -> float:
    if not isinstance(sizes, Mapping):
        return float(sizes)
    missing = [s for s in splits if s not in sizes]
    if missing:
        raise ValueError(f"{what} has no entry for split(s) {', '.join(map(str, missing))}")
    return float(np.mean([sizes[s] for s in splits]))


def compare_with_best(
    scores: Mapping[Hashable, Mapping[str, float]],
    *,
    n_train: Mapping[str, int] | int,
    n_test: Mapping[str, int] | int,
    correct: Mapping[Hashable, Mapping[str, ArrayLike]] | None = None,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> dict[Hashable, Comparison]:
    """Compare every row of one (dataset, metric) table with its best row, paired on the splits.

    The best row is the one with the highest mean score over the splits it has (lowest when
    ``higher_is_better`` is False); a tie in means goes to the first in ``scores``' order. Each
    other row is compared with it on the splits both have:

    - two or more shared splits: :func:`corrected_resampled_ttest` on the paired scores, with the
      mean of ``n_train`` / ``n_test`` over those splits;
    - exactly one shared split: :func:`mcnemar_exact` on ``correct[row][split]`` and
      ``correct[best][split]``; without them (or with arrays of different lengths) p is NaN and
      ``reason`` says why;
    - none: p is NaN.

    Parameters
    ----------
    scores : mapping of row key → (mapping of split id → score)
        ``scores[row][split]`` is the metric of a row on a split. Non-finite or non-numeric scores
        are treated as a missing split (a failed or skipped cell).
    n_train, n_test : mapping of split id → int, or int
        Training and test images per split (an int: the same on every split).
    correct : mapping of row key → (mapping of split id → array of bool), optional
        Per-image correctness of the test predictions, images in the same order for all rows;
        needed only for single-split comparisons.
    higher_is_better : bool
        False for metrics such as error rate or time.
    alpha : float
        Significance level: a row is tied with the best when ``p >= alpha``.

    Returns
    -------
    dict of row key → Comparison
        One entry per row of ``scores``, in the same order. Empty for empty ``scores``. The best
        row gets ``p = NaN``, ``test = "best"``, ``tied = True``, ``mean_difference = 0.0``. Rows
        with no finite score get ``p = NaN``, ``test = "—"``, ``tied = False``.

    Raises
    ------
    ValueError
        ``n_train`` / ``n_test`` lacks a split that a t-test needs.

    Notes
    -----
    Only the best row is a reference: two rows that are each tied with the best are not tested
    against each other. With many rows, some worse rows will look tied by chance (no correction
    for multiple comparisons is made); "tied" means "not shown to differ", never "equal".

    References
    ----------
    .. [1] C. Nadeau and Y. Bengio, "Inference for the generalization error", Machine Learning 52,
       239–281, 2003.
    .. [2] R. R. Bouckaert and E. Frank, "Evaluating the replicability of significance tests for
       comparing learning algorithms", PAKDD 2004, LNCS 3056, 3–12.
    .. [3] T. G. Dietterich, "Approximate statistical tests for comparing supervised classification
       learning algorithms", Neural Computation 10(7), 1895–1923, 1998.
    """
    rows = {key: _finite_scores(row) for key, row in scores.items()}
    sign = 1.0 if higher_is_better else -1.0
    best = None
    best_mean = -math.inf
    for key, row in rows.items():
        if not row:
            continue
        m = sign * float(np.mean(list(row.values())))
        if best is None or m > best_mean:
            best, best_mean = key, m
    out: dict[Hashable, Comparison] = {}
    if best is None:
        for key in rows:
            out[key] = Comparison(None, math.nan, TEST_NONE, 0, False, math.nan, reason="no finite score in any row")
        return out
    ref = rows[best]
    for key, row in rows.items():
        if key == best:
            out[key] = Comparison(best, math.nan, TEST_BEST, len(ref), True, 0.0)
            continue
        common = [s for s in ref if s in row]
        if not common:
            why = "no finite score" if not row else "no split in common with the best row"
            out[key] = Comparison(best, math.nan, TEST_NONE, 0, False, math.nan, reason=why)
            continue
        x = np.array([row[s] for s in common])
        y = np.array([ref[s] for s in common])
        diff = float(np.mean(x - y))
        if len(common) >= 2:
            t, p = corrected_resampled_ttest(
                x, y, _mean_size(n_train, common, "n_train"), _mean_size(n_test, common, "n_test")
            )
            out[key] = Comparison(best, p, TEST_T, len(common), p >= alpha, diff, statistic=t)
            continue
        split = common[0]
        ca = cb = None
        if correct is not None:
            ca = correct.get(key, {}).get(split)
            cb = correct.get(best, {}).get(split)
        if ca is None or cb is None:
            out[key] = Comparison(
                best, math.nan, TEST_MCNEMAR, 1, False, diff,
                reason=f"single split {split!r} and no per-image predictions to pair",
            )  # fmt: skip
            continue
        ca, cb = np.asarray(ca), np.asarray(cb)
        if ca.ndim != 1 or ca.shape != cb.shape:
            out[key] = Comparison(
                best, math.nan, TEST_MCNEMAR, 1, False, diff,
                reason=f"split {split!r}: per-image predictions of different shapes {ca.shape} and {cb.shape}",
            )  # fmt: skip
            continue
        p = mcnemar_exact(ca, cb)
        out[key] = Comparison(best, p, TEST_MCNEMAR, 1, p >= alpha, diff)
    return out


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def significance_columns(results: pd.DataFrame, metric: str, keys: Sequence[str], order: Sequence[tuple],
                         higher_is_better: bool = True) -> dict[tuple, tuple[str, bool]]:
    """For one dataset's records of one task: row key → (*p vs best* text, tied with the best).

    ``order`` lists the rows a table shows, best first; only they are compared, each with the first
    (:func:`compare_with_best`, on the splits both have): the corrected resampled t-test over two or more
    splits, the exact McNemar test on the per-image correctness of a single split (from the records'
    ``predictions`` and ``test_labels``).
    """
    ok = results[results["status"] == "ok"]
    if ok.empty or not len(order):
        return {}
    scores: dict[tuple, dict[str, float]] = {}
    correct: dict[tuple, dict[str, np.ndarray]] = {}
    n_train: dict[str, int] = {}
    n_test: dict[str, int] = {}
    groups = {k: g for k, g in ok.groupby(list(keys), sort=False, dropna=False)}
    for key in order:
        g = groups.get(tuple(key))
        if g is None:
            continue
        key = tuple(key)
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
