"""Local binary pattern histograms (``lbp``): golden values and the invariances the codes promise."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from featbench import create_extractor
from featbench.errors import ConfigError
from featbench.extractors.lbp import lbp_bins


def lbp(images, **params):
    return create_extractor("lbp", **params).fit(images).transform(images)


@pytest.fixture(scope="module")
def brick() -> np.ndarray:
    return skdata.brick()[100:164, 100:164]


@pytest.mark.parametrize("method, flat_bin", [("uniform", 8), ("nri_uniform", 57), ("default", 255)])
def test_flat_image_puts_all_mass_in_one_bin(method, flat_bin):
    # every neighbour equals the centre, so every bit is 1: the uniform code P, the all-ones pattern
    X = lbp([np.full((20, 20), 77, np.uint8)], method=method, grid=2)
    hists = X.reshape(4, -1)
    assert np.all(hists[:, flat_bin] == 1.0)
    assert hists.sum() == 4.0


def test_single_bright_pixel_golden():
    img = np.zeros((5, 5), np.uint8)
    img[2, 2] = 255
    # inner 3x3 (the border ring is left out at R=1): the bright centre has no neighbour >= itself (code 0),
    # its eight dark neighbours have all neighbours >= themselves (code P = 8)
    expected = np.zeros(10, np.float32)
    expected[0], expected[8] = 1 / 9, 8 / 9
    np.testing.assert_allclose(lbp([img])[0], expected, rtol=1e-6)


def test_histograms_sum_to_one_per_cell_and_radius():
    img = np.random.default_rng(0).integers(0, 256, (33, 27), dtype=np.uint8)
    X = lbp([img], P=[8, 16], R=[1, 2], grid=3)[0]
    assert X.size == 9 * (10 + 18)
    np.testing.assert_allclose(X[:90].reshape(9, 10).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(X[90:].reshape(9, 18).sum(axis=1), 1.0, rtol=1e-6)


def test_bin_counts():
    assert [lbp_bins(8, m) for m in ("uniform", "nri_uniform", "ror", "default")] == [10, 59, 36, 256]
    assert lbp_bins(16, "uniform") == 18
    # 'ror' histograms are compact: one bin per rotation-invariant pattern (36 binary necklaces of 8 beads)
    assert create_extractor("lbp", method="ror").fit([np.zeros((8, 8), np.uint8)]).n_features_out_ == 36


def test_rotation_by_90_degrees(brick):
    """Rotation-invariant codes give the same histogram for a rotated texture; the raw code does not."""
    turned = np.rot90(brick)
    for method in ("uniform", "ror"):
        a, b = lbp([brick, turned], method=method)
        np.testing.assert_allclose(a, b, atol=1e-6)
    a, b = lbp([brick, turned], method="default")
    assert np.abs(a - b).sum() > 0.2
    a, b = lbp([brick, turned], method="nri_uniform")
    assert np.abs(a - b).sum() > 0.2


def test_invariant_to_grey_scale_changes(brick):
    """Codes compare neighbours with the centre: a brightness shift changes nothing, a contrast stretch
    only the rare near-ties of interpolated neighbours, while mild noise changes much more."""
    assert brick.min() >= 75 and brick.max() <= 205  # so the maps below neither clip nor merge levels
    shifted = brick + np.uint8(40)
    stretched = (2 * (brick.astype(np.int32) - 75)).astype(np.uint8)
    noisy = np.clip(brick + np.random.default_rng(0).normal(0, 3, brick.shape), 0, 255).astype(np.uint8)
    params = dict(P=[8, 16], R=[1, 2], grid=2)  # 8 histograms, each summing to 1
    a, b, c, d = lbp([brick, shifted, stretched, noisy], **params)
    np.testing.assert_array_equal(b, a)
    per_histogram_l1 = np.abs(np.stack([c, d]) - a).sum(axis=1) / 8
    assert per_histogram_l1[0] < 0.03  # stretched
    assert per_histogram_l1[1] > 0.2  # noisy


def test_grid_cells_describe_where_patterns_are():
    img = np.full((32, 32), 50, np.uint8)
    img[:16, :16] = np.random.default_rng(1).integers(0, 256, (16, 16))
    X = lbp([img], grid=2)[0].reshape(2, 2, 10)
    assert X[1, 1, 8] == 1.0  # flat cell: all pixels code P
    assert X[0, 1, 8] > 0.9 and X[1, 0, 8] > 0.9  # flat but for the column/row next to the noise
    assert X[0, 0, 8] < 0.5  # the noisy cell


def test_more_cells_than_pixels_gives_zero_cells_not_nan():
    X = lbp([np.full((8, 8), 3, np.uint8)], R=2, grid=6)
    assert np.isfinite(X).all()
    hists = X.reshape(36, 10)
    assert set(hists.sum(axis=1)) <= {0.0, 1.0}


def test_parameter_errors():
    imgs = [np.zeros((16, 16), np.uint8)]
    with pytest.raises(ConfigError, match="same number"):
        create_extractor("lbp", P=[8, 16], R=[1, 2, 3]).fit(imgs)
    with pytest.raises(ConfigError, match="P <= 12"):
        create_extractor("lbp", P=16, R=2, method="default").fit(imgs)
    with pytest.raises(ValueError, match="method"):
        create_extractor("lbp", method="var").fit(imgs)
    with pytest.raises(ConfigError, match="every R"):
        create_extractor("lbp", R=[1, 0]).fit(imgs)
    # one P for several radii
    assert create_extractor("lbp", P=8, R=[1, 2, 3]).fit(imgs).n_features_out_ == 30
