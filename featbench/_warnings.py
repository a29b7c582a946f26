"""Fits that stopped at their iteration limit are counted, never hidden."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from sklearn.exceptions import ConvergenceWarning

__all__ = ["count_convergence_warnings"]


def count_convergence_warnings(fit: Callable[[], Any]) -> tuple[Any, int]:
    """Call ``fit()`` and return its result with the number of :class:`~sklearn.exceptions.ConvergenceWarning`
    it raised (stopped at ``max_iter``, fewer distinct clusters than asked, ...).

    Those warnings are counted, not shown: the caller puts the count in its record, where the report shows
    it. Every other warning goes where it would have gone.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = fit()
    bad = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            bad += 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, bad
