"""Shape: Hu's seven moment invariants (OpenCV) and Zernike moments (mahotas) of the gray image or its edges."""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.extractors.base import Extractor, ExtractorSpec, to_gray
from featbench.registry import register_extractor

__all__ = ["HuMoments", "CANNY_THRESHOLDS", "log_transform", "n_zernike"]

#: Hysteresis thresholds of ``cv2.Canny`` for ``source="edges"`` (OpenCV's tutorial values; 3 × 3 Sobel, L1 gradient).
CANNY_THRESHOLDS = (100, 200)


def log_transform(h: np.ndarray) -> np.ndarray:
    """``-sign(h) log10 |h|`` elementwise, and 0 where ``h`` is exactly 0 (where the log is undefined)."""
    h = np.asarray(h, dtype=np.float64)
    out = np.zeros_like(h)
    nz = h != 0
    out[nz] = -np.sign(h[nz]) * np.log10(np.abs(h[nz]))
    return out


def n_zernike(degree: int) -> int:
    """Number of Zernike magnitudes ``|Z_nm|`` with ``0 <= m <= n <= degree`` and ``n - m`` even."""
    return sum(n // 2 + 1 for n in range(degree + 1))


@register_extractor("moments")
class HuMoments(Extractor):
    """Hu's seven moment invariants (Hu 1962), of the gray image or of its Canny edge map.

    ``cv2.moments`` computes the image's moments up to order three (the gray levels as
    mass, not a binary mask); from the normalised central moments ``η_pq`` Hu's seven
    combinations (``cv2.HuMoments``) are invariant to translation, scale and rotation
    (the seventh changes sign under reflection). 7 features, plus the optional Zernike
    magnitudes below.

    With ``source="edges"`` the moments are those of ``cv2.Canny(gray, 100, 200)``
    (:data:`CANNY_THRESHOLDS`, 3 × 3 Sobel aperture, L1 gradient magnitude): the shape of the
    outlines rather than of the brightness. An image without any edge (or an all-black
    image) has no mass: all seven invariants are 0.

    With ``log=True`` (default) each invariant ``h`` becomes ``-sign(h) log10 |h|``
    (:func:`log_transform`, 0 for ``h = 0``). The raw invariants span many orders of
    magnitude (on the clothing photos ``h1`` is about ``1e-3`` and ``h7`` about ``1e-22``), so without the log
    the first one or two dominate any distance and a standardising scaler sees mostly
    rounding noise in the others; the log brings them to a common scale and keeps the sign,
    which carries the reflection information of ``h7``. The price: values near 0 are
    unstable (a tiny ``h`` of either sign maps far out on either side).

    With ``zernike_degree=D``, the magnitudes ``|Z_nm|`` of the Zernike moments up to degree
    ``D`` (``0 <= m <= n <= D``, ``n - m`` even; :func:`n_zernike` of them, 25 for ``D = 8``)
    follow the seven Hu invariants, as :func:`mahotas.features.zernike_moments` computes them
    (Teague 1980): on the disc of radius ``min(height, width) // 2`` pixels centred on the
    image's centre of mass, the image normalised to unit mass there, so they are invariant to
    rotation (the magnitudes) and translation; pixels outside the disc are ignored. They are
    orthogonal and of similar scale, so they are not log-transformed; ``|Z_00|`` is the
    constant ``1/π`` (0 for an image without mass). Their cost grows with the disc's area:
    about 30 ms per image at degree 8 on the 240-500 px flower photos (Hu's seven: 0.2 ms).

    Parameters
    ----------
    source : {"gray", "edges"}, default="gray"
        Moments of the gray image, or of its Canny edge map.
    log : bool, default=True
        Apply the sign-preserving log transform above to the Hu invariants.
    zernike_degree : int or None, default=None
        Also the Zernike magnitudes up to this degree (0 to 20; 8 is common); None for Hu
        only.

    References
    ----------
    .. [1] Hu, M.-K. (1962). Visual pattern recognition by moment invariants. IRE
           Transactions on Information Theory 8(2), pp. 179-187.
    .. [2] Teague, M. R. (1980). Image analysis via the general theory of moments. Journal
           of the Optical Society of America 70(8), pp. 920-930.
    .. [3] Khotanzad, A., Hong, Y. H. (1990). Invariant image recognition by Zernike
           moments. IEEE TPAMI 12(5), pp. 489-497.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="Hu's seven moment invariants (OpenCV), optionally Zernike (mahotas), of gray or edges",
        references=("Hu 1962, Visual pattern recognition by moment invariants",
                    "Teague 1980, Image analysis via the general theory of moments"),
    )
    _parameter_constraints: ClassVar[dict] = {
        "source": [StrOptions({"gray", "edges"})],
        "log": ["boolean"],
        "zernike_degree": [Interval(Integral, 0, 20, closed="both"), None],
    }
    test_params: ClassVar[dict] = {"zernike_degree": 4}

    def __init__(self, source: str = "gray", log: bool = True, zernike_degree: int | None = None) -> None:
        self.source = source
        self.log = log
        self.zernike_degree = zernike_degree

    def _fit(self, images, y) -> None:
        self.n_features_out_ = 7 + (n_zernike(self.zernike_degree) if self.zernike_degree is not None else 0)

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        if self.source == "edges":
            gray = cv2.Canny(np.ascontiguousarray(gray), *CANNY_THRESHOLDS)
        hu = cv2.HuMoments(cv2.moments(gray)).ravel()
        if self.log:
            hu = log_transform(hu)
        if self.zernike_degree is None:
            return hu
        from mahotas.features import zernike_moments

        radius = max(1, min(gray.shape) // 2)
        return np.concatenate([hu, zernike_moments(gray, radius, degree=self.zernike_degree)])
