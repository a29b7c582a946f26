"""Colour: histograms (Swain & Ballard 1991) and moments (Stricker & Orengo 1995) in HSV, Lab or RGB.

Both extractors convert the image with OpenCV's ``cvtColor`` into its uint8 representation of the
colour space, whose channel ranges are (see :data:`CHANNEL_RANGES`):

* ``hsv``: hue 0..179 (OpenCV halves the 0..360 degrees to fit a byte; the range is ``[0, 180)``),
  saturation and value 0..255;
* ``lab``: ``L * 255 / 100``, ``a + 128``, ``b + 128``, each 0..255 (CIE L*a*b*, D65 white);
* ``rgb``: 0..255.

Gray images (``HxW``) are converted to RGB first (:func:`~featbench.extractors.to_rgb`, the gray
level in all three channels): their hue and saturation are then 0 (HSV) and a, b are 128 (Lab), so a
gray image gives a defined vector of the same length as a colour one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import ClassVar

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, to_rgb
from featbench.registry import register_extractor

__all__ = ["ColorHistogram", "ColorMoments", "CHANNEL_RANGES", "to_space"]

#: ``[low, high)`` of each channel of OpenCV's uint8 representation of each colour space.
CHANNEL_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "hsv": ((0, 180), (0, 256), (0, 256)),
    "lab": ((0, 256), (0, 256), (0, 256)),
    "rgb": ((0, 256), (0, 256), (0, 256)),
}
_CONVERSIONS = {"hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2Lab}
#: Most bins a joint histogram may have per cell (32 per channel); beyond, most bins stay empty.
MAX_JOINT_BINS = 32**3


def to_space(image: np.ndarray, space: str) -> np.ndarray:
    """uint8 ``HxWx3`` image in ``space`` (``hsv``, ``lab`` or ``rgb``), from a gray or RGB image."""
    rgb = to_rgb(image)
    if space == "rgb":
        return np.ascontiguousarray(rgb)
    return cv2.cvtColor(np.ascontiguousarray(rgb), _CONVERSIONS[space])


def _cell_edges(length: int, grid: int) -> list[int]:
    """Cell boundaries along one side: ``round(k * length / grid)`` for ``k = 0..grid``."""
    return [round(k * length / grid) for k in range(grid + 1)]


def _cells(image: np.ndarray, grid: int):
    """The ``grid × grid`` cells of ``image`` in row-major order (views; empty when the image is smaller)."""
    if grid == 1:
        yield image
        return
    rows, cols = _cell_edges(image.shape[0], grid), _cell_edges(image.shape[1], grid)
    for i in range(grid):
        for j in range(grid):
            yield image[rows[i]:rows[i + 1], cols[j]:cols[j + 1]]


@register_extractor("color-hist")
class ColorHistogram(Extractor):
    """Colour histograms, joint or per channel, per grid cell (Swain & Ballard 1991).

    The image is converted to ``space`` (``cv2.cvtColor``; gray images are first made RGB,
    see the module docstring), split into ``grid × grid`` cells, and in each cell
    ``cv2.calcHist`` counts the pixels in uniform bins over each channel's range
    (:data:`CHANNEL_RANGES`: hue ``[0, 180)``, everything else ``[0, 256)``), a pixel of
    value ``v`` going to bin ``floor((v - low) * bins / (high - low))``.

    * ``joint=True``: one 3-D histogram of ``bins[0] × bins[1] × bins[2]`` bins per cell
      (Swain & Ballard's colour histogram), flattened in C order (the last channel varies
      fastest);
    * ``joint=False``: one 1-D histogram per channel, concatenated channel by channel.

    Each histogram (the joint one, or each channel's) is then normalised on its own:
    ``l1`` divides by its sum, so it is the fraction of the cell's pixels in each bin;
    ``hellinger`` takes the square root of that (unit L2 norm; a dot product of two such
    vectors is the Bhattacharyya coefficient of the histograms, so a linear classifier works
    with the Hellinger kernel). A cell with no pixel (an image smaller than the grid) gets zeros.

    The dimension is ``grid² × prod(bins)`` (joint) or ``grid² × sum(bins)``; cells are in
    row-major order. With the defaults (HSV, 8 bins per channel, joint, one cell): 512.

    Parameters
    ----------
    space : {"hsv", "lab", "rgb"}, default="hsv"
        Colour space, in OpenCV's uint8 representation (see the module docstring).
    bins : int or list of 3 int, default=8
        Bins per channel, each 1 to 256; an int is used for all three channels, e.g.
        ``[16, 4, 4]`` for hue-heavy HSV histograms. A joint histogram may have at most
        ``32**3`` bins per cell.
    joint : bool, default=True
        One joint 3-D histogram per cell (True) or three 1-D histograms (False).
    grid : int, default=1
        Cells per side, each with its own histograms (spatial layout of colour).
    norm : {"l1", "hellinger"}, default="l1"
        Normalisation of each histogram, see above.

    References
    ----------
    .. [1] Swain, M. J., Ballard, D. H. (1991). Color indexing. International Journal of
           Computer Vision 7(1), pp. 11-32.
    .. [2] Arandjelović, R., Zisserman, A. (2012). Three things everyone should know to
           improve object retrieval. CVPR (the square-root / Hellinger mapping).
    """

    spec = ExtractorSpec(
        family="classical",
        color="rgb",
        description="colour histograms in HSV / Lab / RGB (OpenCV calcHist), joint or per channel, per cell",
        references=("Swain & Ballard 1991, Color indexing",),
    )
    _parameter_constraints: ClassVar[dict] = {
        "space": [StrOptions({"hsv", "lab", "rgb"})],
        "bins": [Interval(Integral, 1, 256, closed="both"), list, tuple],
        "joint": ["boolean"],
        "grid": [Interval(Integral, 1, 64, closed="both")],
        "norm": [StrOptions({"l1", "hellinger"})],
    }
    test_params: ClassVar[dict] = {"bins": [4, 3, 2], "grid": 2}

    def __init__(self, space: str = "hsv", bins: int | Sequence[int] = 8, joint: bool = True, grid: int = 1,
                 norm: str = "l1") -> None:
        self.space = space
        self.bins = bins
        self.joint = joint
        self.grid = grid
        self.norm = norm

    def _bins(self) -> list[int]:
        if isinstance(self.bins, (list, tuple)):
            bins = list(self.bins)
            if len(bins) != 3 or not all(isinstance(b, Integral) and not isinstance(b, bool) and 1 <= b <= 256
                                         for b in bins):
                raise ConfigError(f"color-hist: bins must be an int or a list of 3 ints (one per channel), each "
                                  f"1 to 256, such as [16, 4, 4]; got {self.bins!r}")
            return [int(b) for b in bins]
        return [int(self.bins)] * 3

    def _check_params(self) -> None:
        bins = self._bins()
        if self.joint and math.prod(bins) > MAX_JOINT_BINS:
            raise ConfigError(f"color-hist: a joint histogram of bins={self.bins!r} has {math.prod(bins):,} bins per "
                              f"cell; at most {MAX_JOINT_BINS:,} (32 per channel) are accepted: use fewer bins or "
                              f"joint = false")

    def expected_dim(self) -> int:
        """Length of the feature vector, known from the parameters alone."""
        bins = self._bins()
        return self.grid**2 * (math.prod(bins) if self.joint else sum(bins))

    def _fit(self, images, y) -> None:
        bins = self._bins()
        ranges = CHANNEL_RANGES[self.space]
        if self.joint:
            self.histograms_ = [([0, 1, 2], bins, [v for r in ranges for v in r])]
        else:
            self.histograms_ = [([c], [bins[c]], list(ranges[c])) for c in range(3)]
        self.n_features_out_ = self.expected_dim()

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        converted = to_space(image, self.space)
        out = np.empty(self.n_features_out_, dtype=np.float32)
        start = 0
        for cell in _cells(converted, self.grid):
            for channels, bins, ranges in self.histograms_:
                h = cv2.calcHist([cell], channels, None, bins, ranges).ravel()
                total = float(h.sum())
                if total > 0:
                    h *= np.float32(1.0 / total)
                if self.norm == "hellinger":
                    np.sqrt(h, out=h)
                out[start:start + h.size] = h
                start += h.size
        return out


@register_extractor("color-moments")
class ColorMoments(Extractor):
    """Colour moments: mean, standard deviation and skewness per channel and grid cell (Stricker & Orengo 1995).

    The image is converted to ``space`` (``cv2.cvtColor``; gray images are first made RGB,
    see the module docstring), each channel divided by the upper end of its range in
    :data:`CHANNEL_RANGES` (hue by 180, every other channel by 256) so that its values lie in
    ``[0, 1)``, and split into ``grid × grid`` cells. For the ``N`` values
    ``p_j`` of a channel in a cell the three moments are, as Stricker & Orengo define them:

    * mean ``E = (1/N) Σ p_j``,
    * standard deviation ``σ = ((1/N) Σ (p_j - E)²)^(1/2)`` (population, ``ddof = 0``),
    * skewness ``s = ((1/N) Σ (p_j - E)³)^(1/3)``, the real cube root of the third central
      moment (negative when the tail is on the dark side), in the channel's units — not the
      dimensionless ``scipy.stats.skew``, which is ``s³ / σ³``.

    **Layout.** Cells in row-major order; within a cell, channel by channel, and per channel
    ``(E, σ, s)``: dimension ``9 × grid²``. A cell with no pixel (an image smaller than the
    grid) gets zeros. Hue is an angle, but like the paper this takes its moments as of a
    linear quantity (reds near 0 and near 179 are far apart).

    Parameters
    ----------
    space : {"hsv", "lab", "rgb"}, default="hsv"
        Colour space, in OpenCV's uint8 representation (see the module docstring).
    grid : int, default=1
        Cells per side, each with its own moments.

    References
    ----------
    .. [1] Stricker, M., Orengo, M. (1995). Similarity of color images. Storage and
           Retrieval for Image and Video Databases III, Proc. SPIE 2420, pp. 381-392.
    """

    spec = ExtractorSpec(
        family="classical",
        color="rgb",
        description="colour moments (mean, std, skewness) per channel in HSV / Lab / RGB, per grid cell",
        references=("Stricker & Orengo 1995, Similarity of color images",),
    )
    _parameter_constraints: ClassVar[dict] = {
        "space": [StrOptions({"hsv", "lab", "rgb"})],
        "grid": [Interval(Integral, 1, 64, closed="both")],
    }
    test_params: ClassVar[dict] = {"grid": 2}

    def __init__(self, space: str = "hsv", grid: int = 1) -> None:
        self.space = space
        self.grid = grid

    def expected_dim(self) -> int:
        """Length of the feature vector, known from the parameters alone."""
        return 9 * self.grid**2

    def _fit(self, images, y) -> None:
        self.n_features_out_ = self.expected_dim()

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        scale = np.array([1.0 / high for _, high in CHANNEL_RANGES[self.space]])
        converted = to_space(image, self.space)
        out = np.zeros((self.grid**2, 3, 3), dtype=np.float64)
        for k, cell in enumerate(_cells(converted, self.grid)):
            if not cell.size:
                continue
            p = cell.reshape(-1, 3) * scale
            mean = p.mean(axis=0)
            d = p - mean
            out[k, :, 0] = mean
            out[k, :, 1] = np.sqrt((d * d).mean(axis=0))
            out[k, :, 2] = np.cbrt((d * d * d).mean(axis=0))
        return out.ravel()
