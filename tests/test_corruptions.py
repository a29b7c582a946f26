"""featbench.corruptions: deterministic, uint8 of the input's shape (gray stays gray), distortion growing with
the severity, and the geometric ones doing what their parameter says."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data as skdata

from featbench.corruptions import (
    APPEARANCE,
    CORRUPTIONS,
    GEOMETRIC,
    ROTATION_DEGREES,
    SCALE_FACTORS,
    corrupt,
)


def _photo(size: int = 96, colour: bool = True) -> np.ndarray:
    """A natural photo (scikit-image's astronaut), reduced: real edges, textures and flat parts."""
    import cv2

    img = cv2.resize(skdata.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return img if colour else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("colour", [False, True])
def test_deterministic_uint8_same_shape(name, colour):
    img = _photo(64, colour)
    for s in range(6):
        a, b = corrupt(img, name, s, seed=7), corrupt(img, name, s, seed=7)
        assert a.dtype == np.uint8 and a.shape == img.shape  # gray stays HxW, colour HxWx3
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(corrupt(img, name, 0, seed=7), img)
    assert corrupt(img, name, 3, seed=7) is not img


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "motion_blur",
                                  "elastic_transform", "translation", "perspective"])
def test_the_seed_matters_for_random_corruptions(name):
    img = _photo(64)
    assert not np.array_equal(corrupt(img, name, 3, seed=1), corrupt(img, name, 3, seed=2))


@pytest.mark.parametrize("name", APPEARANCE + ("translation", "perspective"))
@pytest.mark.parametrize("colour", [False, True])
def test_distortion_grows_with_severity(name, colour):
    # PSNR to the clean image falls strictly from severity 1 to 5 (ImageNet-C's constants are monotone, and
    # the random draws are shared between severities)
    img = _photo(96, colour)
    psnr = [_psnr(corrupt(img, name, s, seed=3), img) for s in range(1, 6)]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert math.isinf(_psnr(corrupt(img, name, 0, seed=3), img))


def _blob(size: int, at: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (255 * np.exp(-((xx - at[0]) ** 2 + (yy - at[1]) ** 2) / (2 * 2.0 ** 2))).astype(np.uint8)


def _centroid(img: np.ndarray) -> tuple[float, float]:
    w = img.astype(np.float64)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


def test_rotation_turns_by_its_angle():
    # a blob 20 px right of the centre of a black image ends at the severity's angle, counter-clockwise on screen
    size, c = 65, 32.0
    img = _blob(size, (c + 20, c))
    for s, degrees in enumerate(ROTATION_DEGREES, 1):
        x, y = _centroid(corrupt(img, "rotation", s, seed=0))
        measured = math.degrees(math.atan2(-(y - c), x - c)) % 360
        assert abs(measured - degrees) < 1.0, (s, measured)  # 1 degree: bilinear resampling of a 5-px blob
        assert abs(math.hypot(x - c, y - c) - 20) < 0.5


def test_scale_moves_points_by_its_factor():
    size, c = 129, 64.0
    img = _blob(size, (c + 12, c))
    for s, factor in enumerate(SCALE_FACTORS, 1):
        x, _ = _centroid(corrupt(img, "scale", s, seed=0))
        assert abs((x - c) / 12 - factor) < 0.02, (s, x)  # centroid of a resampled blob: within 2 %
    spread = [abs(math.log2(f)) for f in SCALE_FACTORS]
    assert spread == sorted(spread) and min(SCALE_FACTORS) < 0.6 and max(SCALE_FACTORS) == pytest.approx(2.0)


def test_geometric_fill_is_the_background():
    # uncovered pixels take the border's median colour, not black: a white page stays white where it moved
    img = np.full((40, 40, 3), 250, np.uint8)
    img[15:25, 15:25] = 0
    for name in GEOMETRIC:
        out = corrupt(img, name, 5, seed=1)
        assert out[0, 0].tolist() == [250, 250, 250] and out[-1, -1].tolist() == [250, 250, 250]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_tiny_images_work(name):
    # 8x8 digits: every corruption runs, keeps the shape, and severity 5 is not closer to the image than 1
    from sklearn.datasets import load_digits

    img = (load_digits().images[0] * 16).clip(0, 255).astype(np.uint8)
    outs = [corrupt(img, name, s, seed=5) for s in range(1, 6)]
    assert all(o.shape == (8, 8) and o.dtype == np.uint8 for o in outs)
    if name not in GEOMETRIC:
        assert _psnr(outs[-1], img) <= _psnr(outs[0], img)


def test_brightness_and_contrast_are_what_imagenet_c_says():
    gray = np.full((32, 32), 100, np.uint8)
    # brightness adds 0.1 * severity (of 255) to a gray image; ±1 for rounding
    assert abs(int(corrupt(gray, "brightness", 2, 0)[0, 0]) - (100 + 51)) <= 1
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    out = corrupt(ramp, "contrast", 1, 0).astype(np.float64)
    # contrast keeps the mean and multiplies deviations by 0.4 (ImageNet-C severity 1); 0.5: rounding
    np.testing.assert_allclose(out - ramp.mean(), 0.4 * (ramp - ramp.mean()), atol=0.5 + 1e-9)


def test_bad_input():
    img = _photo(32)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(img, "fog", 1)
    with pytest.raises(ValueError, match="severity must be an integer in"):
        corrupt(img, "contrast", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(img.astype(np.float32), "contrast", 1)
