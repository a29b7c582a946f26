"""glcm, gabor and gist against scikit-image's own functions, and what their parameters mean."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import gabor, gabor_kernel

from featbench import create_extractor
from featbench.errors import ConfigError
from featbench.extractors import texture
from featbench.extractors.texture import GLCM_PROPERTIES, gist_prefilter, quantize


def _image(shape=(20, 24), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.0)  # some texture, not noise
    img[3:9, 4:12] = 230
    return img


def _features(name: str, img: np.ndarray, **params) -> np.ndarray:
    return create_extractor(name, **params).fit([img]).transform([img])[0]


def _cells(a: np.ndarray, grid: int) -> list[np.ndarray]:
    rows = np.round(np.linspace(0, a.shape[0], grid + 1)).astype(int)
    cols = np.round(np.linspace(0, a.shape[1], grid + 1)).astype(int)
    return [a[rows[i]:rows[i + 1], cols[j]:cols[j + 1]] for i in range(grid) for j in range(grid)]


# -- glcm ---------------------------------------------------------------------------------------


def _skimage_glcm(q, levels, distances, angles_deg, properties=GLCM_PROPERTIES, symmetric=True):
    P = graycomatrix(q, distances, np.deg2rad(angles_deg), levels=levels, symmetric=symmetric, normed=True)
    return np.stack([graycoprops(P, p) for p in properties])  # (properties, distances, angles)


@pytest.mark.parametrize("symmetric", [True, False])
def test_glcm_equals_graycoprops(symmetric):
    img = _image()
    levels, distances, angles = 16, [1, 3], [0, 45, 90, 135]
    expected = _skimage_glcm(img // 16, levels, distances, angles, symmetric=symmetric)
    got = _features("glcm", img, levels=levels, distances=distances, angles=angles, symmetric=symmetric)
    assert got.shape == (len(GLCM_PROPERTIES) * len(distances) * len(angles),)
    np.testing.assert_allclose(got, expected.ravel(), rtol=1e-6, atol=1e-7)


def test_glcm_properties_in_the_order_given_and_angles_averaged():
    img = _image(seed=1)
    props = ["correlation", "contrast"]
    expected = _skimage_glcm(img // 8, 32, [2], [0, 60, 120], props)
    got = _features("glcm", img, distances=[2], angles=[0, 60, 120], properties=props)
    np.testing.assert_allclose(got, expected.ravel(), rtol=1e-6, atol=1e-7)
    averaged = _features("glcm", img, distances=[2], angles=[0, 60, 120], properties=props, average_angles=True)
    np.testing.assert_allclose(averaged, expected.mean(axis=2).ravel(), rtol=1e-6, atol=1e-7)


def test_glcm_grid_cells_are_row_major_and_size_resizes_first():
    img = _image((30, 34), seed=2)
    small = cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA)
    expected = np.concatenate([_skimage_glcm(c // 8, 32, [1], [0, 90]).ravel() for c in _cells(small, 2)])
    got = _features("glcm", img, distances=[1], angles=[0, 90], grid=2, size=16)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_glcm_angles_are_degrees_with_0_horizontal():
    stripes = np.zeros((12, 12), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel vertical stripes: horizontal neighbours always differ, vertical never
    levels = 8
    contrast = _features("glcm", stripes, distances=[1], angles=[0, 90], levels=levels, properties=["contrast"])
    np.testing.assert_allclose(contrast, [(levels - 1) ** 2, 0.0])


def test_glcm_cells_without_pairs_get_a_defined_vector():
    tiny = _image((3, 3))
    got = _features("glcm", tiny, distances=[4], angles=[0])  # no pixel pair 4 apart in a 3x3 image
    expected = {p: (1.0 if p == "correlation" else 0.0) for p in GLCM_PROPERTIES}
    np.testing.assert_array_equal(got, [expected[p] for p in GLCM_PROPERTIES])
    assert np.isfinite(_features("glcm", tiny, grid=4)).all()  # more cells than pixels per side


@pytest.mark.parametrize("levels", [2, 7, 32, 256])
def test_quantize_uses_uniform_bins(levels):
    g = np.arange(256, dtype=np.uint8)
    q = quantize(g, levels)
    np.testing.assert_array_equal(q, np.floor(g.astype(np.int64) * levels / 256).astype(np.uint8))
    assert np.bincount(q).min() >= 256 // levels  # every level used, none more than one bin wide


# -- gabor --------------------------------------------------------------------------------------


def _zero_mean_magnitude(img, f, theta, bandwidth):
    """|img * g| for scikit-image's Gabor kernel g with its real part made zero-mean (Manjunath & Ma)."""
    k = gabor_kernel(f, theta=theta, bandwidth=bandwidth)
    img = img.astype(np.float64)
    real = ndimage.convolve(img, k.real - k.real.mean(), mode="mirror")
    return np.hypot(real, ndimage.convolve(img, k.imag, mode="mirror"))


def test_gabor_equals_zero_mean_gabor_convolution_cell_statistics():
    img = _image((40, 40), seed=3)
    freqs, n_orient, grid = [0.1, 0.25], 3, 2
    expected = []
    for f in freqs:
        for k in range(n_orient):
            mag = _zero_mean_magnitude(img / 255.0, f, np.pi * k / n_orient, 1.0)
            expected += [[c.mean(), c.std()] for c in _cells(mag, grid)]
    got = _features("gabor", img, frequencies=freqs, orientations=n_orient, grid=grid, size=40)
    assert got.shape == (len(freqs) * n_orient * grid**2 * 2,)
    np.testing.assert_allclose(got, np.ravel(expected), rtol=1e-4, atol=1e-6)


def test_gabor_bank_is_skimage_gabor_with_the_dc_removed():
    img = _image((24, 28), seed=4).astype(np.float32) / 255
    bank = texture.gabor_bank([0.08, 0.3], 4, bandwidth=1.5)
    assert [(b.frequency, b.theta) for b in bank] == [(f, np.pi * k / 4) for f in (0.08, 0.3) for k in range(4)]
    for filt, mag in zip(bank, texture.gabor_magnitudes(img, bank)):
        k = gabor_kernel(filt.frequency, theta=filt.theta, bandwidth=1.5)
        dc = k.real.mean()
        real, imag = gabor(img.astype(np.float64), frequency=filt.frequency, theta=filt.theta, bandwidth=1.5,
                           mode="mirror")
        # skimage's response minus the response of the kernel's constant part (a box filter)
        real -= dc * ndimage.convolve(img.astype(np.float64), np.ones(k.shape), mode="mirror")
        np.testing.assert_allclose(mag, np.hypot(real, imag), rtol=1e-4, atol=1e-6)
        assert abs(float(filt.real.sum())) < 1e-5 * float(np.abs(filt.real).sum())


def test_gabor_responds_most_to_the_matching_frequency_and_orientation():
    x = np.arange(64)
    for f_true, k_true in [(0.1, 0), (0.2, 2)]:  # theta = 0: carrier along x (vertical stripes); 2 of 4: along y
        wave = np.cos(2 * np.pi * f_true * x)
        img = np.tile(wave, (64, 1)) if k_true == 0 else np.tile(wave[:, None], (1, 64))
        img = np.round(127.5 + 100 * img).astype(np.uint8)
        freqs = [0.05, 0.1, 0.2, 0.4]
        means = _features("gabor", img, frequencies=freqs, orientations=4, size=64)[0::2].reshape(4, 4)
        assert np.unravel_index(means.argmax(), means.shape) == (freqs.index(f_true), k_true)


def test_gabor_and_gist_default_dimensions():
    img = _image((50, 70), seed=5)
    assert _features("gabor", img).shape == (4 * 6 * 2,)  # Manjunath & Ma: 4 scales x 6 orientations, (mean, std)
    assert _features("gist", img).shape == (512,)  # Oliva & Torralba: 4 scales x 8 orientations x 4 x 4 cells


# -- gist ---------------------------------------------------------------------------------------


def _lmgist_prefilt(img: np.ndarray, fc: float = 4.0) -> np.ndarray:
    """LMgist's prefilt.m, line by line."""
    w = 5
    s1 = fc / np.sqrt(np.log(2))
    img = np.log(img + 1)
    img = np.pad(img, w, mode="symmetric")
    sn, sm = img.shape
    n = max(sn, sm)
    n = n + n % 2
    img = np.pad(img, ((0, n - sn), (0, n - sm)), mode="symmetric")
    fx, fy = np.meshgrid(np.arange(-n / 2, n / 2), np.arange(-n / 2, n / 2))
    gf = np.fft.fftshift(np.exp(-(fx**2 + fy**2) / s1**2))
    output = img - np.real(np.fft.ifft2(np.fft.fft2(img) * gf))
    localstd = np.sqrt(np.abs(np.fft.ifft2(np.fft.fft2(output**2) * gf)))
    output = output / (0.2 + localstd)
    return output[w:sn - w, w:sm - w]


@pytest.mark.parametrize("shape, fc", [((32, 32), 4.0), ((33, 33), 4.0), ((24, 31), 2.5)])
def test_gist_prefilter_equals_the_reference_prefilt(shape, fc):
    img = _image(shape, seed=6).astype(np.float64)
    np.testing.assert_allclose(gist_prefilter(img, fc), _lmgist_prefilt(img, fc), rtol=1e-5, atol=1e-5)


def test_gist_is_the_mean_gabor_energy_of_the_prefiltered_image_per_cell():
    img = _image((32, 32), seed=7)
    freqs, n_orient, grid = [0.3, 0.15], 4, 2
    stretched = (img.astype(np.float64) - img.min()) * 255 / (img.max() - img.min())
    pre = _lmgist_prefilt(stretched)
    expected = [c.mean() for f in freqs for k in range(n_orient)
                for c in _cells(_zero_mean_magnitude(pre, f, np.pi * k / n_orient, 1.4), grid)]
    got = _features("gist", img, frequencies=freqs, orientations=n_orient, grid=grid, size=32)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_gist_ignores_gray_level_gain_and_offset():
    img = _image((40, 40), seed=8) // 3  # 0..85
    a = _features("gist", img)
    b = _features("gist", (img * 2 + 40).astype(np.uint8))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_flat_images_give_zero_energies():
    flat = np.full((30, 30), 77, dtype=np.uint8)
    assert not _features("gist", flat).any()
    means_stds = _features("gabor", flat, frequencies=[0.2, 0.4])
    np.testing.assert_allclose(means_stds, 0.0, atol=1e-6)  # band-pass filters of a constant: nothing


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, params, match", [
    ("glcm", {"properties": ["contrast", "entropie"]}, r"properties must be .*contrast.*got \['contrast', 'entropie'\]"),
    ("glcm", {"properties": ["energy", "energy"]}, "twice"),
    ("glcm", {"distances": [1, 0]}, r"distances must be .*int >= 1.*got \[1, 0\]"),
    ("glcm", {"distances": [1.5]}, "distances must be"),
    ("glcm", {"angles": []}, r"angles must be a non-empty list"),
    ("glcm", {"angles": [0, float("nan")]}, "angles must be"),
    ("glcm", {"size": 4, "grid": 5}, "size=4 is smaller than grid=5"),
    ("gabor", {"frequencies": [0.1, 0.6]}, r"frequencies must be .*\(0, 0.5\].*got \[0.1, 0.6\]"),
    ("gabor", {"frequencies": ["0.1"]}, "frequencies must be"),
    ("gist", {"grid": 40, "size": 32}, "grid=40 is larger than size=32"),
])
def test_bad_parameters_name_the_key_and_what_is_accepted(name, params, match):
    with pytest.raises(ConfigError, match=match):
        create_extractor(name, **params).fit([_image()])


# -- perf ---------------------------------------------------------------------------------------


def test_glcm_perf_row_in_quick_mode(monkeypatch):
    from featbench.perf import BENCHMARKS, _load
    from featbench.perf import texture as perf_texture

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)  # the synthetic photos: no data needed
    _load()
    assert BENCHMARKS["glcm"] is perf_texture.glcm_speed
    (row,) = perf_texture.glcm_speed(quick=True)
    assert row.benchmark == "glcm" and row.unit == "ms/image" and row.target == "<= 1.2"
    assert row.value > 0 and row.reference_value > 0 and row.passed is not None
    assert "graycoprops" in row.reference and "quick mode" in row.note and "checked equal" in row.note


def test_glcm_perf_refuses_to_compare_different_work(monkeypatch):
    from featbench.perf import texture as perf_texture

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    monkeypatch.setattr(texture, "quantize", lambda gray, levels: (gray // 4).astype(np.uint8) % levels)
    with pytest.raises(AssertionError, match="differ from the plain scikit-image loop"):
        perf_texture.glcm_speed(quick=True)
