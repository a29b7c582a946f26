"""SIFT and ORB extractors: OpenCV agreement, dense grids, empty images, train-only codebooks."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from joblib import parallel_config
from test_common import assert_close_to_float32_reassociation

from featbench import create_extractor, features
from featbench.cache import FeatureCache
from featbench.datasets.base import ArrayImageSet
from featbench.errors import ConfigError
from featbench.evaluation import Split
from featbench.extractors.keypoints import dense_grid, unpack_bits
from featbench.features import split_features as _features
from featbench.features import transform_parallel

SMALL = {"n_words": 4, "max_descriptors": 3000}


def _textured(seed: int, n: int = 8, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Blurred noise with a few bright rectangles: gradients everywhere, corners for detectors."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, *size), dtype=np.uint8)
    for img in imgs:
        cv2.GaussianBlur(img, (0, 0), 1.5, dst=img)
        for _ in range(3):
            y, x = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 12)
            img[y : y + 10, x : x + 10] = rng.integers(150, 256)
    return imgs


def _codebook(ext) -> dict[str, np.ndarray]:
    enc = ext.encoder_
    names = ["codebook_", "means_", "variances_", "weights_", "pca_mean_", "pca_components_"]
    return {n: getattr(enc, n) for n in names if getattr(enc, n, None) is not None}


# -- training images only -------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [
    ("sift", {"mode": "dense", "step": 8, "scales": (16,), "encoding": "fisher", "pca": 16}),
    ("orb", {"mode": "dense", "step": 8, "scales": (16,), "encoding": "vlad"}),
])
def test_codebook_and_training_features_ignore_test_images(name, params):
    """Through the runner's path: new test images change no codebook entry and no training feature."""
    train = _textured(0, 10)
    labels = np.arange(20) % 2
    split = Split("s0", np.arange(10), np.arange(10, 20))
    results = []
    for seed in (1, 2):
        images = ArrayImageSet("toy", np.concatenate([train, _textured(seed, 10)]), labels, ["a", "b"])
        ext = create_extractor(name, **SMALL, **params)
        feats = _features(ext, images, split, FeatureCache(None), {}, 1, "loky", True)
        results.append((feats, _codebook(ext)))
    (fa, ca), (fb, cb) = results
    assert ca.keys() == cb.keys() and ("codebook_" in ca or "means_" in ca)
    # exact on purpose: the same training images through the same serial code (n_jobs=1, the encoder fit
    # under threadpool_limits(1)) give the same bits; any difference would come from the test images
    for key in ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
    np.testing.assert_array_equal(fa.train, fb.train)
    assert not np.array_equal(fa.test, fb.test)  # the test images did change


def test_fit_never_describes_test_images():
    train, test = _textured(0, 6), _textured(9, 4)
    seen = []
    ext = create_extractor("sift", mode="dense", step=8, scales=(16,), **SMALL)
    original = ext.describe_one
    ext.describe_one = lambda img: (seen.append(img), original(img))[1]
    ext.fit(list(train))
    assert len(seen) == len(train)
    assert not any(np.array_equal(s, t) for s in seen for t in test)


# -- agreement with OpenCV and golden checks ---------------------------------------------------
def test_sift_keypoint_descriptors_are_opencv_s():
    img = _textured(3, 1, (96, 128))[0]
    ext = create_extractor("sift", max_size=None, n_features=50)
    desc, pos = ext.describe_one(img)
    kps, ref = cv2.SIFT_create(nfeatures=50).detectAndCompute(img, None)
    ref_pos = cv2.KeyPoint_convert(kps)
    keep = ref.any(axis=1)
    np.testing.assert_array_equal(desc, ref[keep])
    np.testing.assert_allclose(pos, (ref_pos[keep] + 0.5) / [128, 96], atol=1e-6)


def test_root_sift_is_square_root_of_l1_normalised_sift():
    img = _textured(3, 1, (96, 128))[0]
    plain, _ = create_extractor("sift", max_size=None).describe_one(img)
    root, _ = create_extractor("sift", max_size=None, root_sift=True).describe_one(img)
    np.testing.assert_allclose(root, np.sqrt(plain / plain.sum(axis=1, keepdims=True)), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(root, axis=1), 1.0, rtol=1e-5)


def test_orb_bits_unpack_and_pack_back_and_distance_is_hamming():
    img = _textured(4, 1, (120, 160))[0]
    _, packed = cv2.ORB_create(50, edgeThreshold=8, patchSize=15).detectAndCompute(img, None)
    assert packed is not None and len(packed) >= 2
    bits = unpack_bits(packed)
    assert bits.shape == (len(packed), 256) and bits.dtype == np.float32 and set(np.unique(bits)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.packbits(bits.astype(np.uint8), axis=1), packed)
    assert ((bits[0] - bits[1]) ** 2).sum() == cv2.norm(packed[0], packed[1], cv2.NORM_HAMMING)


def test_orb_keypoint_descriptors_are_opencv_s_bits():
    img = _textured(5, 1, (160, 200))[0]
    ext = create_extractor("orb", max_size=None, n_features=80)
    desc, _ = ext.describe_one(img)
    _, ref = cv2.ORB_create(80).detectAndCompute(img, None)
    assert desc.dtype == np.uint8 and desc.shape[1] == 32  # packed, as OpenCV gives them
    np.testing.assert_array_equal(desc, ref[ref.any(axis=1)])
    np.testing.assert_array_equal(ext.as_float(desc), unpack_bits(desc))


def test_dense_grid_count_and_spacing_follow_the_step():
    h, w, p, step = 50, 70, 16, 6
    grid = dense_grid(h, w, p, step)
    nx, ny = (w - p) // step + 1, (h - p) // step + 1
    assert grid.shape == (nx * ny, 2)
    xs, ys = np.unique(grid[:, 0]), np.unique(grid[:, 1])
    np.testing.assert_allclose(np.diff(xs), step)
    np.testing.assert_allclose(np.diff(ys), step)
    assert xs.min() - (p - 1) / 2 >= 0 and xs.max() + (p - 1) / 2 <= w - 1  # patches inside the image
    assert len(dense_grid(10, 70, 16, 6)) == nx  # a side shorter than the patch gets one row
    img = _textured(6, 1, (h, w))[0]
    for name in ("sift", "orb"):
        ext = create_extractor(name, mode="dense", step=step, scales=(p, 24), max_size=None, min_contrast=0)
        desc, pos = ext.describe_one(img)
        expected = nx * ny + len(dense_grid(h, w, 24, step))
        assert len(desc) == expected, name
        assert pos.min() >= 0 and pos.max() <= 1


def test_min_contrast_skips_flat_patches_only():
    img = np.full((64, 96), 90, np.uint8)
    img[:, 48:] = _textured(7, 1, (64, 48))[0]  # right half textured, left half flat
    desc, pos = create_extractor("sift", mode="dense", step=8, scales=(16,), max_size=None).describe_one(img)
    assert len(desc) > 0 and pos[:, 0].min() > 0.3


# -- empty images, dimensions ---------------------------------------------------------------------
@pytest.mark.parametrize("name,mode,encoding", [
    ("sift", "keypoints", "fisher"), ("sift", "dense", "vlad"), ("orb", "keypoints", "bovw"), ("orb", "dense", "fisher"),
])
def test_flat_gray_image_gives_zero_vector(name, mode, encoding):
    train = list(_textured(0, 6, (96, 96)))
    ext = create_extractor(name, mode=mode, encoding=encoding, step=8, scales=(16,), max_size=None,
                           min_contrast=0.0, pyramid=(1, 2), **SMALL).fit(train)
    X = ext.transform([np.full((80, 100), 128, np.uint8), train[0]])
    np.testing.assert_array_equal(X[0], 0.0)
    assert np.linalg.norm(X[1]) > 0.99


@pytest.mark.parametrize("encoding,cell_dim", [("bovw", 4), ("vlad", 4 * 8), ("fisher", 2 * 4 * 8)])
def test_dimension_from_encoding_pca_and_pyramid(encoding, cell_dim):
    train = list(_textured(0, 6))
    ext = create_extractor("sift", mode="dense", step=8, scales=(16,), encoding=encoding, pca=8,
                           pyramid=[1, 2, 4], **SMALL).fit(train)
    assert ext.transform(train[:2]).shape == (2, cell_dim * 21)


def test_min_size_enlarges_tiny_images():
    digit = np.zeros((8, 8), np.uint8)
    digit[2:6, 3:5] = 255
    plain = create_extractor("sift", mode="dense", step=4, scales=(16,))
    assert plain.prepare(digit).shape == (8, 8)
    big = create_extractor("sift", mode="dense", step=4, scales=(16,), min_size=32)
    assert big.prepare(digit).shape == (32, 32)
    assert len(big.describe_one(digit)[0]) == 25


# -- parameters, pickling, parallel ------------------------------------------------------------------
def test_bad_parameters_name_themselves():
    imgs = list(_textured(0, 2))
    with pytest.raises(ConfigError, match="scales"):
        create_extractor("sift", scales=[16, 2]).fit(imgs)
    with pytest.raises(ConfigError, match="pyramid"):
        create_extractor("orb", pyramid=[]).fit(imgs)
    with pytest.raises(ValueError, match="'encoding' parameter"):
        create_extractor("sift", encoding="sparse").fit(imgs)
    with pytest.raises(ConfigError, match="pca=300"):
        create_extractor("sift", mode="dense", step=8, scales=(16,), pca=300, **SMALL).fit(imgs)
    with pytest.raises(ConfigError, match="min_size=64 is larger than max_size=32"):
        create_extractor("orb", min_size=64, max_size=32).fit(imgs)


def test_fitted_extractor_pickles_without_opencv_objects_and_parallel_equals_serial(monkeypatch):
    train = list(_textured(0, 6))
    ext = create_extractor("orb", mode="dense", step=8, scales=(16,), **SMALL).fit(train)
    before = ext.transform(train)  # populates the per-process cache of detectors and grids
    assert "_local" in vars(ext)
    blob = pickle.dumps(ext)
    assert b"cv2" not in blob
    np.testing.assert_array_equal(pickle.loads(blob).transform(train), before)
    monkeypatch.setattr(features, "MIN_PARALLEL_IMAGES", 4)  # split even this small set across workers
    monkeypatch.setattr(features, "MIN_PARALLEL_SECONDS", 0.0)
    many = [train[i % 6] for i in range(20)]
    with parallel_config(backend="threading"):
        par = transform_parallel(ext, many, n_jobs=2)
    # workers encode chunks of other sizes: BLAS products of other shapes, sums in another order
    assert_close_to_float32_reassociation(par, ext.transform(many))
