"""Local binary patterns: histograms of scikit-image's ``local_binary_pattern`` codes."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from skimage.feature import local_binary_pattern
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray
from featbench.registry import register_extractor

__all__ = ["LBP", "lbp_bins"]

# 'default' and 'ror' codes are P-bit numbers: beyond this, histograms would have too many bins.
_MAX_P_FULL = 12


@functools.lru_cache(maxsize=32)
def _ror_table(P: int) -> np.ndarray:
    """Bin of each rotation-invariant ('ror') code: the codes that occur, numbered in increasing order."""
    codes = np.arange(2**P, dtype=np.int64)
    mask = 2**P - 1
    smallest = codes.copy()
    for k in range(1, P):
        np.minimum(smallest, ((codes >> k) | (codes << (P - k))) & mask, out=smallest)
    occurring = np.unique(smallest)
    table = np.full(2**P, -1, dtype=np.int64)
    table[occurring] = np.arange(occurring.size)
    return table


def lbp_bins(P: int, method: str) -> int:
    """Histogram bins of one (P, R) pair: ``P + 2`` for ``uniform``, ``P (P - 1) + 3`` for
    ``nri_uniform``, ``2**P`` for ``default``, the number of rotation-invariant codes for ``ror``."""
    if method == "uniform":
        return P + 2
    if method == "nri_uniform":
        return P * (P - 1) + 3
    if method == "ror":
        return int(_ror_table(P).max()) + 1
    return 2**P


def _cell_edges(length: int, grid: int) -> np.ndarray:
    return np.round(np.linspace(0, length, grid + 1)).astype(int)


@register_extractor("lbp")
class LBP(Extractor):
    """Uniform local binary pattern histograms (Ojala, Pietikäinen & Mäenpää 2002).

    Each pixel of the gray image is coded by comparing it with ``P`` neighbours
    on a circle of radius ``R`` (bilinear interpolation,
    :func:`skimage.feature.local_binary_pattern`); with ``method="uniform"`` the
    code is the number of neighbours at least as bright as the centre when the
    circular pattern has at most two 0/1 transitions, and ``P + 1`` otherwise —
    grey-scale and rotation invariant, ``P + 2`` values. The image is split into
    ``grid × grid`` cells and each cell gets a histogram of its codes, normalised
    to sum to 1; several ``(P, R)`` pairs are concatenated. Pixels closer than
    ``ceil(R)`` to the border, whose circle leaves the image, are left out
    (unless the image is too small to have any other).

    The dimension is ``grid**2 * sum(bins(P_i))`` with ``bins`` from
    :func:`lbp_bins`: 10 per cell for the default ``P=8, R=1``.

    Parameters
    ----------
    P : int or list of int, default=8
        Neighbours on the circle, one per (P, R) pair; a single value is used for
        every radius.
    R : float or list of float, default=1.0
        Radius of the circle in pixels, one per pair; e.g. ``P = [8, 16, 24]``,
        ``R = [1, 2, 3]`` is Ojala et al.'s multi-resolution operator.
    method : {"uniform", "nri_uniform", "ror", "default"}, default="uniform"
        ``uniform``: rotation-invariant uniform patterns (the paper's
        ``LBP^riu2``); ``nri_uniform``: uniform patterns that keep their
        orientation (``LBP^u2``, the face descriptor of Ahonen et al. 2006);
        ``ror``: every rotation-invariant pattern; ``default``: the raw ``P``-bit
        code. The last two need ``P <= 12``.
    grid : int, default=1
        Cells per side, each with its own histogram (1: one histogram for the
        whole image; faces like 4 or more, textures 1).
    size : int or None, default=None
        Side of the square the image is resized to first; None keeps its size (the
        scale of the texture then stays as it is).

    References
    ----------
    .. [1] Ojala, T., Pietikäinen, M., Mäenpää, T. (2002). Multiresolution gray-scale
           and rotation invariant texture classification with local binary patterns.
           IEEE TPAMI 24(7), pp. 971-987.
    .. [2] Ahonen, T., Hadid, A., Pietikäinen, M. (2006). Face description with local
           binary patterns: application to face recognition. IEEE TPAMI 28(12),
           pp. 2037-2041.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="local binary pattern histograms (scikit-image), uniform, per grid cell",
        references=(
            "Ojala, Pietikäinen & Mäenpää 2002, Multiresolution gray-scale and rotation invariant texture "
            "classification with local binary patterns",
            "Ahonen, Hadid & Pietikäinen 2006, Face description with local binary patterns",
        ),
    )
    _parameter_constraints: ClassVar[dict] = {
        "P": [Interval(Integral, 1, None, closed="left"), list, tuple],
        "R": [Interval(Real, 0.0, None, closed="neither"), list, tuple],
        "method": [StrOptions({"uniform", "nri_uniform", "ror", "default"})],
        "grid": [Interval(Integral, 1, None, closed="left")],
        "size": [Interval(Integral, 3, None, closed="left"), None],
    }
    test_params: ClassVar[dict] = {"P": [8, 8], "R": [1, 2], "grid": 2}

    def __init__(
        self,
        P: int | Sequence[int] = 8,
        R: float | Sequence[float] = 1.0,
        method: str = "uniform",
        grid: int = 1,
        size: int | None = None,
    ) -> None:
        self.P = P
        self.R = R
        self.method = method
        self.grid = grid
        self.size = size

    def _pairs(self) -> list[tuple[int, float]]:
        Ps = list(self.P) if isinstance(self.P, (list, tuple)) else [self.P]
        Rs = list(self.R) if isinstance(self.R, (list, tuple)) else [self.R]
        if not Ps or not Rs:
            raise ConfigError("lbp: P and R must not be empty lists")
        if len(Ps) == 1:
            Ps = Ps * len(Rs)
        if len(Rs) == 1:
            Rs = Rs * len(Ps)
        if len(Ps) != len(Rs):
            raise ConfigError(f"lbp: P and R need the same number of values (one per (P, R) pair); got P={self.P!r}, "
                              f"R={self.R!r}")
        for p in Ps:
            if isinstance(p, bool) or not isinstance(p, Integral) or p < 1:
                raise ConfigError(f"lbp: every P must be an int >= 1; got {p!r}")
        for r in Rs:
            if isinstance(r, bool) or not isinstance(r, Real) or not r > 0:
                raise ConfigError(f"lbp: every R must be a number > 0; got {r!r}")
        if self.method in ("ror", "default") and max(Ps) > _MAX_P_FULL:
            raise ConfigError(f"lbp: method={self.method!r} gives 2**P codes; it needs P <= {_MAX_P_FULL} "
                              f"(got P={max(Ps)}); use method='uniform' for more neighbours")
        return [(int(p), float(r)) for p, r in zip(Ps, Rs)]

    def _check_params(self) -> None:
        self._pairs()

    def _fit(self, images, y) -> None:
        self.pairs_ = self._pairs()
        self.n_features_out_ = self.grid**2 * sum(lbp_bins(p, self.method) for p, _ in self.pairs_)

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        if self.size is not None:
            gray = resize(gray, (self.size, self.size))
        g = self.grid
        parts = []
        for P, R in self.pairs_:
            codes = local_binary_pattern(gray, P, R, self.method).astype(np.int64)
            if self.method == "ror":
                codes = _ror_table(P)[codes]
            m = math.ceil(R - 1e-9)
            if min(codes.shape) > 2 * m:
                codes = codes[m:-m, m:-m] if m else codes
            bins = lbp_bins(P, self.method)
            rows, cols = _cell_edges(codes.shape[0], g), _cell_edges(codes.shape[1], g)
            hist = np.zeros((g, g, bins), dtype=np.float64)
            for i in range(g):
                for j in range(g):
                    cell = codes[rows[i]:rows[i + 1], cols[j]:cols[j + 1]]
                    if cell.size:
                        hist[i, j] = np.bincount(cell.ravel(), minlength=bins)[:bins] / cell.size
            parts.append(hist.ravel())
        return np.concatenate(parts)
