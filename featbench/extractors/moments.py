"""Shape: Hu's seven moment invariants of the gray image or of its edge map (OpenCV)."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
from sklearn.utils._param_validation import StrOptions

from featbench.extractors.base import Extractor, ExtractorSpec, to_gray
from featbench.registry import register_extractor

__all__ = ["HuMoments", "CANNY_THRESHOLDS", "log_transform"]

#: Hysteresis thresholds of ``cv2.Canny`` for ``source="edges"`` (OpenCV's tutorial values; 3 × 3 Sobel, L1 gradient).
CANNY_THRESHOLDS = (100, 200)


def log_transform(h: np.ndarray) -> np.ndarray:
    """``-sign(h) log10 |h|`` elementwise, and 0 where ``h`` is exactly 0 (where the log is undefined)."""
    h = np.asarray(h, dtype=np.float64)
    out = np.zeros_like(h)
    nz = h != 0
    out[nz] = -np.sign(h[nz]) * np.log10(np.abs(h[nz]))
    return out


@register_extractor("moments")
class HuMoments(Extractor):
    """Hu's seven moment invariants (Hu 1962), of the gray image or of its Canny edge map.

    ``cv2.moments`` computes the image's moments up to order three (the gray levels as
    mass, not a binary mask); from the normalised central moments ``η_pq`` Hu's seven
    combinations (``cv2.HuMoments``) are invariant to translation, scale and rotation
    (the seventh changes sign under reflection). 7 features.

    With ``source="edges"`` the moments are those of ``cv2.Canny(gray, 100, 200)``
    (:data:`CANNY_THRESHOLDS`, 3 × 3 Sobel aperture, L1 gradient magnitude): the shape of the
    outlines rather than of the brightness. An image without any edge (or an all-black
    image) has no mass: all seven invariants are 0.

    With ``log=True`` (default) each invariant ``h`` becomes ``-sign(h) log10 |h|``
    (:func:`log_transform`, 0 for ``h = 0``). The raw invariants span many orders of
    magnitude (``h1`` is about ``1e-3``, ``h7`` often ``1e-20`` or less), so without the log
    the first one or two dominate any distance and a standardising scaler sees mostly
    rounding noise in the others; the log brings them to a common scale and keeps the sign,
    which carries the reflection information of ``h7``. The price: values near 0 are
    unstable (a tiny ``h`` of either sign maps far out on either side).

    Parameters
    ----------
    source : {"gray", "edges"}, default="gray"
        Moments of the gray image, or of its Canny edge map.
    log : bool, default=True
        Apply the sign-preserving log transform above.

    References
    ----------
    .. [1] Hu, M.-K. (1962). Visual pattern recognition by moment invariants. IRE
           Transactions on Information Theory 8(2), pp. 179-187.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="Hu's seven moment invariants (OpenCV) of the gray image or its Canny edges",
        references=("Hu 1962, Visual pattern recognition by moment invariants",),
    )
    _parameter_constraints: ClassVar[dict] = {
        "source": [StrOptions({"gray", "edges"})],
        "log": ["boolean"],
    }

    def __init__(self, source: str = "gray", log: bool = True) -> None:
        self.source = source
        self.log = log

    def _fit(self, images, y) -> None:
        self.n_features_out_ = 7

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        if self.source == "edges":
            gray = cv2.Canny(np.ascontiguousarray(gray), *CANNY_THRESHOLDS)
        hu = cv2.HuMoments(cv2.moments(gray)).ravel()
        return log_transform(hu) if self.log else hu
