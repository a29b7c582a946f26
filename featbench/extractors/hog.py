"""Histograms of oriented gradients through OpenCV's ``HOGDescriptor``."""

from __future__ import annotations

from numbers import Integral

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray
from featbench.registry import register_extractor


def deskew(image: np.ndarray) -> np.ndarray:
    """Undo the slant of a centred glyph with an affine shear from its second moments.

    The shear ``mu11 / mu02`` makes the glyph's principal axis vertical; the
    procedure is the one of OpenCV's "OCR of hand-written data" tutorial.
    Images with no vertical spread are returned unchanged.
    """
    m = cv2.moments(image)
    if abs(m["mu02"]) < 1e-2:
        return image.copy()
    skew = m["mu11"] / m["mu02"]
    h, w = image.shape[:2]
    shear = np.float32([[1, skew, -0.5 * h * skew], [0, 1, 0]])
    return cv2.warpAffine(image, shear, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)


@register_extractor("hog")
class HOG(Extractor):
    """Histograms of oriented gradients (OpenCV ``HOGDescriptor``).

    The gray image is (optionally deskewed and) resized to ``size × size``, then
    described by block-normalised histograms of gradient orientation over a
    dense grid of cells. All sizes are in pixels of the resized image, as in
    OpenCV; the dimension is
    ``blocks_per_side**2 * (block_size / cell_size)**2 * bins`` with
    ``blocks_per_side = (size - block_size) / block_stride + 1``.

    Parameters
    ----------
    size : int, default=64
        Side of the square window the image is resized to.
    cell_size : int, default=8
        Side of a cell, in pixels.
    block_size : int, default=16
        Side of a normalisation block, in pixels; a multiple of ``cell_size``.
    block_stride : int, default=8
        Step between blocks, in pixels; a multiple of ``cell_size``.
    bins : int, default=9
        Orientation bins per cell.
    signed : bool, default=False
        Orientations over 360° rather than 180°.
    deskew : bool, default=False
        Straighten slanted glyphs first (for digit-like data); see :func:`deskew`.
    sqrt : bool, default=False
        Take the square root of every (non-negative) descriptor value, so that a
        linear or RBF kernel on the result compares histograms with the Hellinger
        kernel, as RootSIFT does for SIFT [2]_. Pairs well with a classifier that
        keeps the features' own scale (``scale = "none"``).

    References
    ----------
    .. [1] Dalal, N., Triggs, B. (2005). Histograms of oriented gradients for human
           detection. CVPR 2005, pp. 886-893.
    .. [2] Arandjelović, R., Zisserman, A. (2012). Three things everyone should know
           to improve object retrieval. CVPR 2012, pp. 2911-2918.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="histograms of oriented gradients (OpenCV HOGDescriptor)",
        references=("Dalal & Triggs 2005, Histograms of oriented gradients for human detection",),
    )
    _parameter_constraints = {
        # Larger than any image worth resizing to; the run also checks that n_images × dim fits in memory.
        "size": [Interval(Integral, 8, 4096, closed="both")],
        "cell_size": [Interval(Integral, 2, None, closed="left")],
        "block_size": [Interval(Integral, 2, None, closed="left")],
        "block_stride": [Interval(Integral, 1, None, closed="left")],
        "bins": [Interval(Integral, 2, 180, closed="both")],
        "signed": ["boolean"],
        "deskew": ["boolean"],
        "sqrt": ["boolean"],
    }

    def __init__(
        self,
        size: int = 64,
        cell_size: int = 8,
        block_size: int = 16,
        block_stride: int = 8,
        bins: int = 9,
        signed: bool = False,
        deskew: bool = False,
        sqrt: bool = False,
    ) -> None:
        self.size = size
        self.cell_size = cell_size
        self.block_size = block_size
        self.block_stride = block_stride
        self.bins = bins
        self.signed = signed
        self.deskew = deskew
        self.sqrt = sqrt

    def _check_params(self) -> None:
        s, c, b, st = self.size, self.cell_size, self.block_size, self.block_stride
        if b % c:
            raise ConfigError(f"hog: block_size={b} must be a multiple of cell_size={c}")
        if st % c:
            raise ConfigError(f"hog: block_stride={st} must be a multiple of cell_size={c}")
        if b > s or (s - b) % st:
            fit = b + st * max(1, round((s - b) / st))
            raise ConfigError(
                f"hog: size={s} does not fit blocks of {b} px every {st} px; "
                f"(size - block_size) must be a non-negative multiple of block_stride, e.g. size={fit}"
            )

    def expected_dim(self) -> int:
        """Length of the descriptor, known from the parameters alone (blocks × cells per block × bins)."""
        blocks = (self.size - self.block_size) // self.block_stride + 1
        return blocks * blocks * (self.block_size // self.cell_size) ** 2 * self.bins

    def _fit(self, images, y) -> None:
        self.n_features_out_ = self._descriptor().getDescriptorSize()

    def _descriptor(self) -> cv2.HOGDescriptor:
        s, c, b, st = self.size, self.cell_size, self.block_size, self.block_stride
        return cv2.HOGDescriptor(
            (s, s), (b, b), (st, st), (c, c), self.bins, 1, -1.0, 0, 0.2, False, 64, bool(self.signed)
        )

    def _transform_batch(self, images) -> np.ndarray:
        hog = self._descriptor()
        s = self.size
        out = np.empty((len(images), self.n_features_out_), dtype=np.float32)
        for i in range(len(images)):
            img = to_gray(images[i])
            if self.deskew:
                img = deskew(img)
            out[i] = hog.compute(resize(img, (s, s))).reshape(-1)
        if self.sqrt:
            np.sqrt(out, out=out)  # HOG values are non-negative (clipped, normalised histograms)
        return out
