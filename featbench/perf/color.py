"""Speed of featbench's ``color-hist`` against a plain OpenCV loop on the same photos, in the same run.

Both sides take the same RGB photos (200 clothing photos of ``$FEATBENCH_DATA/clothing-dataset-small-subset``,
40 in quick mode, resized to a longer side of 256 px *before* timing; without ``FEATBENCH_DATA``,
a deterministic synthetic colour set of the same size) and do the same work per image:
``cv2.cvtColor`` to HSV, a joint ``cv2.calcHist`` of 8 × 8 × 8 bins over OpenCV's ranges
(hue ``[0, 180)``, saturation and value ``[0, 256)``) and an L1 normalisation. featbench's side
is the whole ``transform`` of one image (input checks, conversion, the float32 row); the two
outputs are checked equal first.
"""

from __future__ import annotations

import cv2
import numpy as np

from featbench._paths import featbench_data
from featbench.perf import Measurement, benchmark
from featbench.perf.classical import _paired_per_image

__all__ = ["colour_photos"]

_LONGER_SIDE = 256
_BINS = 8


def colour_photos(n: int, longer_side: int = _LONGER_SIDE) -> tuple[list[np.ndarray], str]:
    """``n`` RGB uint8 images with the given longer side, and a description of where they come from."""
    from featbench.extractors import to_rgb

    data = featbench_data()
    root = data / "clothing-dataset-small-subset" if data is not None else None
    if root is not None and root.is_dir():
        from featbench.datasets import load_dataset

        ds = load_dataset("folder", root=str(root))
        picks = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
        imgs = []
        for i in picks:
            rgb = to_rgb(ds[int(i)])
            h, w = rgb.shape[:2]
            s = longer_side / max(h, w)
            imgs.append(cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA))
        return imgs, f"{len(imgs)} clothing photos, RGB, longer side {longer_side} px"
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(n):
        img = rng.integers(0, 256, (longer_side * 3 // 4, longer_side, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (0, 0), 2.0)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, longer_side * 3 // 4 - 20, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))), colour, -1)
        imgs.append(img)
    return imgs, f"{n} synthetic colour images (FEATBENCH_DATA unset), longer side {longer_side} px"


def _plain_hist(img: np.ndarray) -> np.ndarray:
    """What a user writes with OpenCV alone."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [_BINS] * 3, [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, None, alpha=1.0, norm_type=cv2.NORM_L1).ravel()


@benchmark("color-hist")
def color_hist_speed(quick: bool = False) -> list[Measurement]:
    """featbench ``color-hist`` per image against cvtColor + calcHist + L1 normalisation in a loop."""
    from featbench import create_extractor

    images, source = colour_photos(40 if quick else 200)
    ext = create_extractor("color-hist", space="hsv", bins=_BINS, joint=True, grid=1, norm="l1").fit(images[:0])

    def ours(img: np.ndarray) -> np.ndarray:
        return ext.transform([img])

    for i, img in enumerate(images):  # the same work on both sides, or the ratio means nothing
        if not np.allclose(ours(img)[0], _plain_hist(img), rtol=1e-5, atol=1e-7):
            raise AssertionError(f"color-hist: featbench's features of image {i} differ from the plain OpenCV loop")
    rounds = 2 if quick else 5
    ref, t = (s / len(images) for s in _paired_per_image(_plain_hist, ours, images, rounds))
    return [
        Measurement(
            benchmark="color-hist", subject="featbench color-hist transform (one image per call)",
            reference="cv2.cvtColor + cv2.calcHist + cv2.normalize (L1) loop",
            value=1000 * t, reference_value=1000 * ref, unit="ms/image", target="<= 1.2",
            note=f"HSV, joint {_BINS}x{_BINS}x{_BINS} bins, one cell, L1; outputs checked equal; each image timed on "
                 f"both sides in turn, best of {rounds} rounds per image, OpenCV single-threaded on both sides; "
                 f"{len(images)} images ({source}), serial" + ("; quick mode" if quick else ""),
        )
    ]
