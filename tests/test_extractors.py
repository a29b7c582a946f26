"""Built-in extractors against the libraries they wrap, and their edge cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from featbench import create_extractor
from featbench.errors import ConfigError
from featbench.extractors.hog import deskew


def test_pixels_golden():
    img = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    X = create_extractor("pixels", size=2).fit([img]).transform([img])
    np.testing.assert_allclose(X, [[0.0, 1.0, 0.2, 0.4]], atol=1e-6)
    rgb = np.dstack([img, img // 2, np.zeros_like(img)])
    Xc = create_extractor("pixels", size=2, color="rgb").fit([rgb]).transform([rgb])
    assert Xc.shape == (1, 12)
    np.testing.assert_allclose(Xc[0, :3], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(Xc[0, 3:6], [1.0, 127 / 255, 0], atol=1e-6)


def test_pixels_resizes_with_area_averaging():
    img = np.zeros((4, 4), dtype=np.uint8)
    img[:2, :2] = 200
    X = create_extractor("pixels", size=2).fit([img]).transform([img])
    np.testing.assert_allclose(X[0], [200 / 255, 0, 0, 0], atol=1e-6)


def test_hog_equals_opencv_descriptor():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    ext = create_extractor("hog", size=32, cell_size=8, block_size=16, block_stride=8, bins=9).fit([img])
    ref = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9).compute(img).ravel()
    X = ext.transform([img])
    assert X.shape == (1, 3 * 3 * 4 * 9)
    np.testing.assert_allclose(X[0], ref, rtol=1e-6)


def test_hog_sqrt_is_the_square_root_of_the_plain_descriptor():
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (24, 24), dtype=np.uint8) for _ in range(3)]
    params = dict(size=24, cell_size=4, block_size=8, block_stride=4, bins=12, signed=True)
    plain = create_extractor("hog", **params).fit(imgs).transform(imgs)
    rooted = create_extractor("hog", sqrt=True, **params).fit(imgs).transform(imgs)
    assert (plain >= 0).all() and (plain > 0).mean() > 0.5
    np.testing.assert_allclose(rooted, np.sqrt(plain), rtol=1e-6)


def test_hog_bad_geometry_says_what_fits():
    with pytest.raises(ConfigError, match=r"size=30 .* e\.g\. size=32"):
        create_extractor("hog", size=30, cell_size=8, block_size=16, block_stride=8).fit([])
    with pytest.raises(ConfigError, match="block_size=12 must be a multiple of cell_size=8"):
        create_extractor("hog", block_size=12).fit([])


def test_deskew_straightens_a_slanted_stroke():
    img = np.zeros((20, 20), dtype=np.uint8)
    for r in range(2, 18):  # a stroke leaning right by 0.5 px per row
        c = int(round(10 + 0.5 * (r - 10)))
        img[r, c - 1 : c + 2] = 255
    before = cv2.moments(img)
    after = cv2.moments(deskew(img))
    assert abs(before["mu11"] / before["mu02"]) > 0.3
    assert abs(after["mu11"] / after["mu02"]) < 0.1


def test_create_extractor_unknown_param_lists_accepted():
    with pytest.raises(ConfigError, match=r"unknown parameter 'cel_size' for extractor 'hog'; did you mean 'cell_size'\? accepted: .*cell_size"):
        create_extractor("hog", cel_size=4)
