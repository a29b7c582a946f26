"""Speed of featbench's ``glcm`` against a plain scikit-image loop on the same photos, in the same run.

Both sides take the same gray photos (:func:`featbench.perf.classical.photos`: 200 clothing
photos, 40 in quick mode, longer side 256 px) and do the same work per image: resize to
128 × 128 (``cv2.resize``, area interpolation), quantise to 32 gray levels, count the
co-occurrence matrices at distances 1, 2, 4 and angles 0°, 45°, 90°, 135°
(:func:`skimage.feature.graycomatrix`) and compute Haralick's six statistics
(:func:`skimage.feature.graycoprops`). featbench's side is the whole ``transform`` of one
image (input checks, conversion, the float32 row); the two outputs are checked equal first.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops

from featbench.perf import Measurement, benchmark
from featbench.perf.classical import _paired_per_image, photos

_SIZE = 128
_LEVELS = 32
_DISTANCES = [1, 2, 4]
_ANGLES = [0, 45, 90, 135]
_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


def _plain_glcm(img: np.ndarray) -> np.ndarray:
    """What a user writes with scikit-image alone."""
    small = cv2.resize(img, (_SIZE, _SIZE), interpolation=cv2.INTER_AREA)
    q = small // (256 // _LEVELS)
    P = graycomatrix(q, _DISTANCES, np.deg2rad(_ANGLES), levels=_LEVELS, symmetric=True, normed=True)
    return np.concatenate([graycoprops(P, prop).ravel() for prop in _PROPERTIES])


@benchmark("glcm")
def glcm_speed(quick: bool = False) -> list[Measurement]:
    """featbench ``glcm`` per image against resize + quantise + graycomatrix + graycoprops in a loop."""
    from featbench import create_extractor

    images, source = photos(40 if quick else 200)
    ext = create_extractor("glcm", size=_SIZE, levels=_LEVELS, distances=_DISTANCES, angles=_ANGLES,
                           properties=list(_PROPERTIES)).fit(images[:0])

    def ours(img: np.ndarray) -> np.ndarray:
        return ext.transform([img])

    for i, img in enumerate(images):  # the same work on both sides, or the ratio means nothing
        if not np.allclose(ours(img)[0], _plain_glcm(img), rtol=1e-5, atol=1e-6):
            raise AssertionError(f"glcm: featbench's features of image {i} differ from the plain scikit-image loop")
    rounds = 2 if quick else 5
    ref, t = (s / len(images) for s in _paired_per_image(_plain_glcm, ours, images, rounds))
    return [
        Measurement(
            benchmark="glcm", subject="featbench glcm transform (one image per call)",
            reference="cv2.resize + quantise + skimage graycomatrix + graycoprops loop",
            value=1000 * t, reference_value=1000 * ref, unit="ms/image", target="<= 1.2",
            note=f"resize to {_SIZE}x{_SIZE}, {_LEVELS} levels, distances {_DISTANCES}, angles {_ANGLES} degrees, "
                 f"six Haralick statistics; outputs checked equal; each image timed on both sides in turn, best of "
                 f"{rounds} rounds per image; {len(images)} images ({source}), serial"
                 + ("; quick mode" if quick else ""),
        )
    ]
