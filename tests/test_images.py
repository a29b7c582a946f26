"""One image-normalisation rule for files and for arrays given to extractors (issue 8, item 12).

``featbench.images.as_uint8_image`` is what the file decoder applies to decoded samples
and what every extractor applies to each input image, so a uint16 or float array gives
the same features as the same picture read from disk; anything else is refused with a
``featbench.errors.ImageError`` naming the dtype or shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featbench import create_extractor, list_extractors
from featbench.datasets import ArrayImageSet, decode_image
from featbench.errors import FeatbenchError, ImageError
from featbench.extractors import Extractor, ExtractorSpec
from featbench.images import as_uint8_image
from featbench.registry import get_extractor


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(6):
        shape = (32, 32) if i % 2 == 0 else (40, 30, 3)
        base = rng.integers(0, 256, size=shape, dtype=np.uint8)
        base[4:14, 6:16] = 255 - base[4:14, 6:16] // 4  # structure for keypoint detectors
        imgs.append(base)
    return imgs


LABELS = np.arange(6) % 2


def _as_uint16(img: np.ndarray, seed: int) -> np.ndarray:
    """A 16-bit image whose high byte is ``img`` (and a random low byte)."""
    low = np.random.default_rng(seed).integers(0, 256, img.shape, dtype=np.uint16)
    return img.astype(np.uint16) * 256 + low


# -- the function itself ---------------------------------------------------------------------


def test_uint8_passes_through_untouched():
    gray = np.zeros((5, 4), np.uint8)
    rgb = np.zeros((5, 4, 3), np.uint8)
    assert as_uint8_image(gray) is gray
    assert as_uint8_image(rgb) is rgb


def test_depth_rules_match_the_file_loader(tmp_path):
    rng = np.random.default_rng(3)
    g16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    np.testing.assert_array_equal(as_uint8_image(g16), (g16 >> 8).astype(np.uint8))
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(as_uint8_image(g16), decode_image(tmp_path / "g16.png"))

    g8 = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    np.testing.assert_array_equal(as_uint8_image(g8 / 255.0), g8)
    np.testing.assert_array_equal(as_uint8_image((g8 / 255.0).astype(np.float32)), g8)
    np.testing.assert_array_equal(as_uint8_image(g8 > 127), np.where(g8 > 127, 255, 0))
    np.testing.assert_array_equal(as_uint8_image(g8[..., None]), g8)

    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(as_uint8_image(np.dstack([rgb, alpha])), decode_image(tmp_path / "rgba.png"))
    np.testing.assert_array_equal(as_uint8_image(np.dstack([rgb, np.full_like(alpha, 255)])), rgb)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((4, 4), np.complex64), ["complex64"]),
        (np.empty((4, 4), object), ["object"]),
        (np.full((4, 4), np.nan), ["NaN"]),
        (np.full((4, 4), 2.5), ["[0, 1]"]),
        (np.zeros(16, np.uint8), ["(16,)"]),
        (np.zeros((4, 4, 5), np.uint8), ["(4, 4, 5)"]),
        (np.zeros((2, 4, 4, 3), np.uint8), ["(2, 4, 4, 3)"]),
        (np.zeros((0, 0), np.uint8), ["(0, 0)"]),
        (np.zeros((3, 0, 3), np.uint8), ["(3, 0, 3)"]),
    ],
)
def test_refused_inputs_name_dtype_or_shape_and_what_is_accepted(bad, words):
    with pytest.raises(ImageError) as err:
        as_uint8_image(bad)
    assert isinstance(err.value, FeatbenchError) and isinstance(err.value, ValueError)
    message = str(err.value)
    assert "\n" not in message
    assert "uint8" in message  # says what would be accepted
    for w in words:
        assert w in message


# -- every registered extractor -----------------------------------------------------------------


@pytest.fixture(params=list_extractors())
def name(request) -> str:
    return request.param


def test_every_extractor_normalises_its_input(name):
    imgs = _images()
    ext = create_extractor(name, **get_extractor(name).test_params).fit(imgs, LABELS)
    X = ext.transform(imgs)
    d = X.shape[1]

    # uint16 input = the uint8 image of its high byte (the file rule); float [0, 1] = value * 255
    np.testing.assert_allclose(ext.transform([_as_uint16(im, i) for i, im in enumerate(imgs)]), X, atol=1e-5)
    np.testing.assert_allclose(ext.transform([im / 255.0 for im in imgs]), X, atol=1e-5)
    np.testing.assert_allclose(ext.transform([im[..., None] if im.ndim == 2 else im for im in imgs]), X, atol=1e-5)
    # fitting on converted images gives the same model as on the uint8 ones
    again = create_extractor(name, **get_extractor(name).test_params)
    again.fit([(im / 255.0).astype(np.float32) for im in imgs], LABELS)
    np.testing.assert_allclose(again.transform(imgs), X, atol=1e-5)

    # refused inputs raise the featbench error, not cv2.error / ZeroDivisionError
    for bad in (
        np.zeros((32, 32), np.complex64),
        np.full((32, 32), np.nan),
        np.zeros((32, 32, 5), np.uint8),
        np.zeros((0, 0), np.uint8),
    ):
        with pytest.raises(ImageError):
            ext.transform([imgs[0], bad])

    # an empty input gives (0, d), d as for a non-empty call
    empty = ext.transform([])
    assert empty.shape == (0, d) and empty.dtype == np.float32
    assert ext.transform(np.zeros((0, 32, 32), np.uint8)).shape == (0, d)


# -- uint8 input costs nothing: no copy, no per-image wrapper --------------------------------------


class _Spy(Extractor):
    spec = ExtractorSpec(family="classical", color="gray", description="spy")

    def _transform_batch(self, images):
        self.seen_ = images
        return np.zeros((len(images), 1), np.float32)


def test_uint8_batches_reach_the_extractor_untouched():
    stack = np.zeros((3, 8, 8), np.uint8)
    spy = _Spy().fit(stack)
    spy.transform(stack)
    assert spy.seen_ is stack
    ds = ArrayImageSet("x", np.zeros((3, 8, 8, 3), np.uint8), [0, 1, 0], ["a", "b"])
    spy.transform(ds)
    assert spy.seen_ is ds

    spy.transform(stack.astype(np.uint16) * 257)
    assert spy.seen_[0].dtype == np.uint8 and len(spy.seen_) == 3
