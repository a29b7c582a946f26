"""Colour SIFT (sift ``color = "hsv" | "opponent" | "rgb"``): per-channel OpenCV descriptors at the gray keypoints."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.base import BaseEstimator

from featbench import create_extractor
from featbench.cache import feature_key
from featbench.extractors.keypoints import SIFT, SIFT_COLORS, color_channels

SMALL = {"n_words": 4, "max_descriptors": 3000}


def _colour_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Blurred colour noise (channels independent) with coloured rectangles: gradients in every channel."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    cv2.GaussianBlur(img, (0, 0), 1.5, dst=img)
    for _ in range(4):
        y, x = rng.integers(0, size[0] - 20), rng.integers(0, size[1] - 20)
        img[y : y + 16, x : x + 16] = rng.integers(0, 256, 3)
    return img


def _channel_descriptors(channel: np.ndarray, kps) -> np.ndarray:
    out_kps, desc = cv2.SIFT_create().compute(np.ascontiguousarray(channel), kps)
    assert len(out_kps) == len(kps)
    return desc


@pytest.mark.parametrize("color", SIFT_COLORS)
def test_keypoint_mode_blocks_are_opencv_sift_of_each_channel_at_the_gray_keypoints(color):
    img = _colour_image(0)
    desc, pos = create_extractor("sift", max_size=None, n_features=60, color=color).describe_one(img)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    kps = cv2.SIFT_create(nfeatures=60).detect(gray, None)
    chans = color_channels(img, color)
    ref = np.hstack([_channel_descriptors(chans[..., c], kps) for c in range(3)])
    keep = ref.any(axis=1)
    assert desc.shape == (int(keep.sum()), 384) and len(desc) > 10
    for c in range(3):
        np.testing.assert_array_equal(desc[:, 128 * c : 128 * (c + 1)], ref[keep, 128 * c : 128 * (c + 1)],
                                      err_msg=f"{color} channel {c}")
    # the same keypoints as gray SIFT: positions equal the gray extractor's
    _, gray_pos = create_extractor("sift", max_size=None, n_features=60).describe_one(img)
    np.testing.assert_array_equal(pos, gray_pos)


@pytest.mark.parametrize("color", SIFT_COLORS)
def test_dense_mode_blocks_are_opencv_sift_of_each_channel_on_the_same_grid(color):
    img = _colour_image(1)
    params = {"mode": "dense", "step": 8, "scales": (16,), "max_size": None, "min_contrast": 0.0}
    gray_ext = create_extractor("sift", **params)
    desc, pos = create_extractor("sift", color=color, **params).describe_one(img)
    gray_desc, gray_pos = gray_ext.describe_one(img)
    np.testing.assert_array_equal(pos, gray_pos)  # same grid (no descriptor is all zero on this image)
    kps = tuple(gray_ext._dense_keypoints(gray_ext.prepare(img))[0][2])
    chans = color_channels(img, color)
    assert desc.shape == (len(kps), 384)
    for c in range(3):
        np.testing.assert_array_equal(desc[:, 128 * c : 128 * (c + 1)], _channel_descriptors(chans[..., c], kps))


def test_colour_channels_follow_their_definitions():
    img = _colour_image(2)
    r, g, b = (img[..., i].astype(np.float64) for i in range(3))
    np.testing.assert_array_equal(color_channels(img, "rgb"), img)
    np.testing.assert_array_equal(color_channels(img, "hsv"), cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    opp = color_channels(img, "opponent").astype(np.float64)
    # van de Sande et al.'s O1, O2, O3, each mapped linearly from its range onto [0, 255] (then rounded)
    for ch, o, lo, hi in [(0, (r - g) / np.sqrt(2), -255 / np.sqrt(2), 255 / np.sqrt(2)),
                          (1, (r + g - 2 * b) / np.sqrt(6), -510 / np.sqrt(6), 510 / np.sqrt(6)),
                          (2, (r + g + b) / np.sqrt(3), 0.0, 765 / np.sqrt(3))]:
        np.testing.assert_allclose(opp[..., ch], (o - lo) / (hi - lo) * 255, atol=0.5 + 1e-9)


def test_gray_image_in_colour_is_rgb_with_equal_channels():
    """Documented fallback: a gray image keeps the dimension; its constant colour channels give zeros."""
    img = cv2.cvtColor(_colour_image(3), cv2.COLOR_RGB2GRAY)
    gray_desc, gray_pos = create_extractor("sift", max_size=None, n_features=40).describe_one(img)
    zeros = np.zeros_like(gray_desc)
    expected = {"rgb": [gray_desc] * 3, "hsv": [zeros, zeros, gray_desc], "opponent": [zeros, zeros, gray_desc]}
    for color, blocks in expected.items():
        desc, pos = create_extractor("sift", max_size=None, n_features=40, color=color).describe_one(img)
        np.testing.assert_array_equal(desc, np.hstack(blocks), err_msg=color)
        np.testing.assert_array_equal(pos, gray_pos)


def test_root_sift_is_applied_to_each_channel_block():
    img = _colour_image(4)
    plain, _ = create_extractor("sift", max_size=None, color="opponent").describe_one(img)
    root, _ = create_extractor("sift", max_size=None, color="opponent", root_sift=True).describe_one(img)
    blocks = plain.reshape(len(plain), 3, 128)
    expected = np.sqrt(blocks / np.maximum(blocks.sum(axis=2, keepdims=True), 1e-12)).reshape(len(plain), 384)
    np.testing.assert_allclose(root, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["keypoints", "dense"])
def test_colour_sift_encodes_384_d_descriptors(mode):
    imgs = [_colour_image(s, (64, 80)) for s in range(6)]
    params = {"mode": mode, "step": 8, "scales": (16,), "max_size": None, **SMALL}
    ext = create_extractor("sift", color="hsv", encoding="fisher", pca=8, **params).fit(imgs)
    assert ext.encoder_.pca_components_.shape == (384, 8)  # descriptors @ components
    X = ext.transform(imgs)
    assert X.shape == (6, 2 * 4 * 8) and X.dtype == np.float32 and np.isfinite(X).all()
    assert ext.spec.color == "rgb" and SIFT.spec.color == "gray"
    vlad = create_extractor("sift", color="rgb", encoding="vlad", **params).fit(imgs)
    assert vlad.transform(imgs).shape == (6, 4 * 384)


def test_gray_is_the_default_and_the_feature_key_is_unchanged_by_it():
    assert create_extractor("sift").color == "gray"
    for params in ({}, {"mode": "dense", "encoding": "fisher", "pca": 32}):
        assert feature_key("fp", create_extractor("sift", **params)) == \
            feature_key("fp", create_extractor("sift", color="gray", **params))
    assert feature_key("fp", create_extractor("sift", color="hsv")) != feature_key("fp", create_extractor("sift"))


def test_feature_key_of_gray_sift_is_the_key_from_before_color_existed(monkeypatch):
    """Features cached before ``color`` existed stay valid: the key of gray SIFT is the key computed from
    the parameters without ``color`` (SIFT's get_params as it was)."""
    params = ({}, {"mode": "dense"})
    current = [feature_key("fp", create_extractor("sift", **p)) for p in params]
    monkeypatch.setattr(SIFT, "cache_key_defaults", {}, raising=False)
    monkeypatch.setattr(SIFT, "get_params", lambda self, deep=True: {
        k: v for k, v in BaseEstimator.get_params(self, deep).items() if k != "color"})
    for p, key in zip(params, current):
        assert key == feature_key("fp", create_extractor("sift", **p))
