"""color-hist, color-moments, moments and pca against NumPy / SciPy / OpenCV / scikit-learn on small images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.stats
from sklearn.decomposition import PCA as SklearnPCA

from featbench import create_extractor
from featbench.errors import ConfigError
from featbench.extractors.moments import CANNY_THRESHOLDS, log_transform, n_zernike

SPACES = {"hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2Lab, "rgb": None}
HIGH = {"hsv": (180, 256, 256), "lab": (256, 256, 256), "rgb": (256, 256, 256)}


def _rgb(seed: int = 0, shape=(30, 41)) -> np.ndarray:
    """A small colour image with smooth regions and noise, so every channel takes many values."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img[: shape[0] // 2, : shape[1] // 3] = (200, 30, 40)  # a red block: hue near 0
    img[shape[0] // 2:, shape[1] // 2:] //= 3  # a dark region
    return img


def _convert(rgb: np.ndarray, space: str) -> np.ndarray:
    return rgb.copy() if SPACES[space] is None else cv2.cvtColor(rgb, SPACES[space])


def _cells(img: np.ndarray, grid: int) -> list[np.ndarray]:
    """Row-major cells with boundaries round(k * length / grid), as documented."""
    rows = [round(k * img.shape[0] / grid) for k in range(grid + 1)]
    cols = [round(k * img.shape[1] / grid) for k in range(grid + 1)]
    return [img[rows[i]:rows[i + 1], cols[j]:cols[j + 1]] for i in range(grid) for j in range(grid)]


# -- color-hist -----------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["hsv", "lab", "rgb"])
@pytest.mark.parametrize("grid", [1, 2])
def test_color_hist_joint_equals_numpy_histogramdd(space, grid):
    rgb = _rgb(1)
    bins = [6, 4, 5]
    X = create_extractor("color-hist", space=space, bins=bins, joint=True, grid=grid).fit([rgb]).transform([rgb])
    expected = []
    for cell in _cells(_convert(rgb, space), grid):
        edges = [np.linspace(0, HIGH[space][c], bins[c] + 1) for c in range(3)]
        h, _ = np.histogramdd(cell.reshape(-1, 3).astype(np.float64), bins=edges)
        expected.append(h.ravel() / h.sum())  # C order: last channel fastest
    expected = np.concatenate(expected)
    assert X.shape == (1, grid**2 * 6 * 4 * 5)
    np.testing.assert_allclose(X[0], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("space", ["hsv", "lab", "rgb"])
def test_color_hist_per_channel_equals_numpy_histogram(space):
    rgb = _rgb(2)
    bins = [7, 3, 16]
    X = create_extractor("color-hist", space=space, bins=bins, joint=False, grid=2).fit([rgb]).transform([rgb])
    expected = []
    for cell in _cells(_convert(rgb, space), 2):
        for c in range(3):
            h, _ = np.histogram(cell[..., c].astype(np.float64), bins=bins[c], range=(0, HIGH[space][c]))
            expected.append(h / h.sum())  # each channel's histogram normalised on its own
    np.testing.assert_allclose(X[0], np.concatenate(expected), rtol=1e-6, atol=1e-7)
    assert X.shape[1] == 4 * sum(bins)


def test_color_hist_hsv_hue_uses_opencv_range_0_180():
    """A pure blue (hue 240 degrees = 120 in OpenCV) falls in the hue bin of 120/180, not of 120/256."""
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[..., 2] = 255
    X = create_extractor("color-hist", space="hsv", bins=[3, 1, 1], joint=False).fit([blue]).transform([blue])
    np.testing.assert_array_equal(X[0, :3], [0, 0, 1])  # bins [0, 60), [60, 120), [120, 180)


def test_color_hist_hellinger_is_sqrt_of_l1():
    imgs = [_rgb(3), _rgb(4)]
    l1 = create_extractor("color-hist", bins=4, grid=2).fit(imgs).transform(imgs)
    hel = create_extractor("color-hist", bins=4, grid=2, norm="hellinger").fit(imgs).transform(imgs)
    np.testing.assert_allclose(hel, np.sqrt(l1), rtol=1e-6)
    # each cell's histogram has unit L2 norm
    np.testing.assert_allclose(np.linalg.norm(hel.reshape(2, 4, 64), axis=2), 1.0, rtol=1e-6)


def test_color_hist_of_gray_image_is_that_of_its_rgb_copy():
    gray = _rgb(5)[..., 0]
    ext = create_extractor("color-hist", bins=4, joint=False).fit([gray])
    X = ext.transform([gray])
    np.testing.assert_array_equal(X, ext.transform([np.repeat(gray[..., None], 3, axis=2)]))
    # gray has hue 0 and saturation 0 in HSV: everything in the first hue and saturation bins
    np.testing.assert_array_equal(X[0, :8], [1, 0, 0, 0, 1, 0, 0, 0])


def test_color_hist_empty_cells_are_zero():
    tiny = _rgb(6, shape=(2, 2))
    X = create_extractor("color-hist", bins=2, grid=3).fit([tiny]).transform([tiny])
    per_cell = X.reshape(9, 8).sum(axis=1)
    assert set(per_cell.round(6)) == {0.0, 1.0} and per_cell.sum() == pytest.approx(4)  # 4 pixels in 4 cells


@pytest.mark.parametrize("bins, match", [([8, 8], "list of 3 ints"), ([8, 0, 8], "list of 3 ints"),
                                         ([8, 8, 300], "list of 3 ints"), (64, "at most 32,768")])
def test_color_hist_bad_bins_are_config_errors(bins, match):
    with pytest.raises(ConfigError, match=match):
        create_extractor("color-hist", bins=bins).fit([_rgb()])


def test_color_hist_per_channel_allows_many_bins():
    X = create_extractor("color-hist", bins=64, joint=False).fit([_rgb()]).transform([_rgb()])
    assert X.shape == (1, 192)


# -- color-moments --------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["hsv", "lab", "rgb"])
def test_color_moments_equal_scipy_stats(space):
    rgb = _rgb(7)
    X = create_extractor("color-moments", space=space, grid=2).fit([rgb]).transform([rgb])
    assert X.shape == (1, 4 * 9)
    got = X.reshape(4, 3, 3)  # cell, channel, (mean, std, skewness)
    for k, cell in enumerate(_cells(_convert(rgb, space), 2)):
        for c in range(3):
            p = cell[..., c].ravel().astype(np.float64) / HIGH[space][c]
            np.testing.assert_allclose(got[k, c, 0], np.mean(p), rtol=1e-5)
            np.testing.assert_allclose(got[k, c, 1], np.std(p), rtol=1e-5)
            m3 = scipy.stats.moment(p, order=3)
            np.testing.assert_allclose(got[k, c, 2], np.cbrt(m3), rtol=1e-5, atol=1e-7)
            # Stricker & Orengo's skewness is the cube root of the third central moment: cbrt(skew) * std
            np.testing.assert_allclose(got[k, c, 2], np.cbrt(scipy.stats.skew(p)) * np.std(p), rtol=1e-4, atol=1e-6)


def test_color_moments_skewness_sign():
    dark_tail = np.full((10, 10, 3), 200, np.uint8)
    dark_tail[0, :3] = 0  # a few dark pixels: tail on the dark side
    X = create_extractor("color-moments", space="rgb").fit([dark_tail]).transform([dark_tail]).reshape(3, 3)
    assert (X[:, 2] < 0).all()


def test_color_moments_of_gray_image():
    gray = _rgb(8)[..., 1]
    X = create_extractor("color-moments").fit([gray]).transform([gray]).reshape(3, 3)
    np.testing.assert_array_equal(X[:2], 0)  # hue and saturation of a gray image are 0
    np.testing.assert_allclose(X[2, 0], gray.mean() / 256, rtol=1e-5)  # value = the gray level


# -- moments --------------------------------------------------------------------------------------


def _shape_image() -> np.ndarray:
    img = np.zeros((48, 64), np.uint8)
    cv2.ellipse(img, (30, 22), (18, 9), 25, 0, 360, 220, -1)
    cv2.rectangle(img, (40, 30), (55, 44), 120, -1)
    return img


@pytest.mark.parametrize("log", [True, False])
def test_moments_equal_cv2_hu_moments(log):
    img = _shape_image()
    X = create_extractor("moments", log=log).fit([img]).transform([img])
    hu = cv2.HuMoments(cv2.moments(img)).ravel()
    expected = -np.sign(hu) * np.log10(np.abs(hu)) if log else hu
    assert X.shape == (1, 7)
    np.testing.assert_allclose(X[0], expected, rtol=1e-6)


def test_moments_of_edges_equal_cv2_of_canny():
    img = _shape_image()
    X = create_extractor("moments", source="edges", log=False).fit([img]).transform([img])
    edges = cv2.Canny(img, *CANNY_THRESHOLDS)
    assert edges.any()
    np.testing.assert_allclose(X[0], cv2.HuMoments(cv2.moments(edges)).ravel(), rtol=1e-6)
    assert not np.allclose(X, create_extractor("moments", log=False).fit([img]).transform([img]))


def test_moments_are_rotation_invariant_and_h7_flips_under_reflection():
    img = _shape_image()
    ext = create_extractor("moments", log=False).fit([img])
    X, rot, flip = ext.transform([img, np.ascontiguousarray(np.rot90(img)), np.ascontiguousarray(img[:, ::-1])])
    np.testing.assert_allclose(rot, X, rtol=1e-4)
    np.testing.assert_allclose(flip[:6], X[:6], rtol=1e-4)
    np.testing.assert_allclose(flip[6], -X[6], rtol=1e-4)


def test_moments_of_blank_image_and_log_of_zero_are_zero():
    blank = np.zeros((16, 16), np.uint8)
    X = create_extractor("moments").fit([blank]).transform([blank])
    np.testing.assert_array_equal(X, 0)
    np.testing.assert_array_equal(log_transform(np.array([0.0, 1e-3, -1e-3])), [0.0, 3.0, -3.0])


@pytest.mark.parametrize("source", ["gray", "edges"])
def test_moments_zernike_equal_mahotas_after_hu(source):
    from mahotas.features import zernike_moments

    img = _shape_image()
    ext = create_extractor("moments", source=source, zernike_degree=8).fit([img])
    X = ext.transform([img])
    assert X.shape == (1, 7 + 25) and n_zernike(8) == 25
    hu_only = create_extractor("moments", source=source).fit([img]).transform([img])
    np.testing.assert_array_equal(X[:, :7], hu_only)
    src = cv2.Canny(img, *CANNY_THRESHOLDS) if source == "edges" else img
    np.testing.assert_allclose(X[0, 7:], zernike_moments(src, min(img.shape) // 2, degree=8), rtol=1e-5, atol=1e-7)


def test_moments_zernike_magnitudes_are_rotation_invariant():
    img = np.zeros((64, 64), np.uint8)
    cv2.ellipse(img, (30, 34), (16, 7), 25, 0, 360, 220, -1)
    ext = create_extractor("moments", zernike_degree=6).fit([img])
    X, rot = ext.transform([img, np.ascontiguousarray(np.rot90(img))])
    np.testing.assert_allclose(rot[7:], X[7:], rtol=1e-3, atol=1e-6)
    assert ext._empty_features().shape == (0, 7 + n_zernike(6))


# -- pca ------------------------------------------------------------------------------------------


def _gray_images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (40, 40)).astype(np.uint8), (0, 0), 3)
    # images that share structure (so a few components explain most variance) plus noise
    return [np.clip(base * rng.uniform(0.5, 1.5) + rng.normal(0, 12, (40, 40)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def _pixels(images, size: int) -> np.ndarray:
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA).ravel() for im in images]
                    ).astype(np.float32) / 255


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_equals_sklearn_pca_on_resized_pixels(whiten):
    train, test = _gray_images(30, 0), _gray_images(5, 1)
    ext = create_extractor("pca", size=16, n_components=6, whiten=whiten).fit(train)
    reference = SklearnPCA(n_components=6, whiten=whiten, svd_solver="full").fit(_pixels(train, 16))
    X = ext.transform(test)
    assert X.shape == (5, 6) and X.dtype == np.float32
    np.testing.assert_allclose(X, reference.transform(_pixels(test, 16)), rtol=1e-4, atol=1e-4)


def test_pca_is_learnt_from_the_training_images_only():
    train, other, test = _gray_images(20, 2), _gray_images(20, 3), _gray_images(4, 4)
    ext = create_extractor("pca", size=12, n_components=3).fit(train)
    before = ext.transform(test)
    ext.transform(other)  # transforming other images changes nothing
    np.testing.assert_array_equal(ext.transform(test), before)
    assert not np.allclose(create_extractor("pca", size=12, n_components=3).fit(other).transform(test), before)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_pca_fraction_keeps_the_fewest_components_explaining_more_than_it(fraction):
    train = _gray_images(40, 5)
    ext = create_extractor("pca", size=10, n_components=fraction).fit(train)
    ratios = SklearnPCA(svd_solver="full").fit(_pixels(train, 10)).explained_variance_ratio_
    k = int(np.searchsorted(np.cumsum(ratios), fraction, side="right")) + 1
    assert ext.n_features_out_ == k
    assert ext.transform(train[:2]).shape == (2, k)
    assert ext._empty_features().shape == (0, k)


def test_pca_more_components_than_training_images_is_a_config_error():
    train = _gray_images(5, 6)
    with pytest.raises(ConfigError, match=r"n_components=6 is more than the 5 training images"):
        create_extractor("pca", size=8, n_components=6).fit(train)
    assert create_extractor("pca", size=8, n_components=5).fit(train).transform(train).shape == (5, 5)


def test_pca_more_components_than_pixels_is_a_config_error_before_any_data():
    with pytest.raises(ConfigError, match=r"n_components=65 is more than the 64 pixels"):
        create_extractor("pca", size=8, n_components=65).validate()


def test_pca_needs_training_images():
    with pytest.raises(ConfigError, match="needs training images"):
        create_extractor("pca").fit([])


# -- perf -----------------------------------------------------------------------------------------


def test_color_hist_perf_quick_compares_the_same_work(monkeypatch):
    from featbench.perf import color

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)  # the synthetic colour photos: no data needed
    (row,) = color.color_hist_speed(quick=True)
    assert row.benchmark == "color-hist" and row.target == "<= 1.2" and row.unit == "ms/image"
    assert "calcHist" in row.reference and row.value > 0 and row.reference_value > 0
    assert "outputs checked equal" in row.note and "quick mode" in row.note and "synthetic" in row.note


def test_color_hist_perf_refuses_different_work(monkeypatch):
    from featbench.perf import color

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    plain = color._plain_hist
    monkeypatch.setattr(color, "_plain_hist", lambda img: np.sqrt(plain(img)))  # Hellinger: other work
    with pytest.raises(AssertionError, match="differ from the plain OpenCV loop"):
        color.color_hist_speed(quick=True)
