"""Text helpers shared by every stage: numbers and counts as tables show them, file-name slugs."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["fmt", "fmt_count", "slug"]


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


def spread(row: Any, metric: str, of: int | None = None) -> str:
    """`` ± <std>`` of ``metric`` over the splits of a summary row, or `` (1 split)`` where there is one split
    (no spread to show, rather than a misleading ± 0.000). ``of``: the splits the table's other rows have; a row
    that averages fewer (cells missing from the run) says so: `` ± 0.012 (2 of 3 splits)``."""
    splits = row.get("splits")
    known = splits is not None and splits == splits
    fewer = f" of {int(of)} splits" if known and of is not None and int(splits) < int(of) else ""
    if known and int(splits) < 2:
        return f" (1{fewer or ' split'})"
    return f" ± {row[f'{metric}_std']:.3f}" + (f" ({int(splits)}{fewer})" if fewer else "")
