"""Image corruptions at five severities: the ImageNet-C families that make sense for small gray or colour
images, and the geometric changes the keypoint literature is about.

``corrupt(image, name, severity, seed)`` returns a ``uint8`` array of the image's shape (a gray ``HxW``
image stays gray, an ``HxWx3`` one stays colour); severity 0 is the image itself. The same ``seed`` gives
the same image, and every random draw (noise, blur direction, displacement field, shift direction) is made
the same way at every severity (shot noise aside: its Poisson counts depend on the severity's rate), so that
two severities of one image differ in amplitude only.

The appearance corruptions follow Hendrycks & Dietterich (2019) and their constants per severity (as the
``imagecorruptions`` package, Michaelis et al. 2019, writes them out): ``gaussian_noise``, ``shot_noise``,
``impulse_noise``, ``defocus_blur``, ``motion_blur``, ``zoom_blur``, ``brightness``, ``contrast``,
``pixelate``, ``jpeg_compression``, ``elastic_transform``. Their constants in pixels (the defocus disc's
radius, the motion blur's length and width) were set for 224-px ImageNet images; here they are scaled by
the image's shorter side / 224, so that a severity blurs the same share of any image, as Hendrycks &
Dietterich's own CIFAR-10-C constants (32 px) are roughly theirs for ImageNet divided by 7; the elastic
displacement field is drawn on a grid whose shorter side is 224 and resized to the image for the same reason.

The geometric ones (OpenCV warps, bilinear; uncovered pixels take the median colour of the image's
border, i.e. its background, rather than black or mirrored content):

========================  =====  =====  =====  =====  =====
severity                  1      2      3      4      5
========================  =====  =====  =====  =====  =====
``rotation`` (degrees)    15     30     45     90     180
``scale`` (factor)        1.15   0.76   1.52   0.57   2.0
``translation`` (share)   0.05   0.10   0.15   0.20   0.25
``perspective`` (share)   0.04   0.08   0.12   0.16   0.20
========================  =====  =====  =====  =====  =====

``scale`` zooms about the centre, alternately in and out, by 2^(±0.2·severity); ``translation`` shifts by
that share of each side, in a direction drawn from the seed; ``perspective`` moves each corner inwards by up
to that share of the sides (amounts drawn from the seed).

Why not a library: ``imagecorruptions`` 1.1.2 (2020) refuses images smaller than 32 px (digits are 8×8,
faces 25×25), returns 3 channels for a gray image, draws from NumPy's global random state, needs
``opencv-python`` beside this project's ``opencv-python-headless``, and three of its functions fail on
NumPy 2 / scikit-image ≥ 0.19 (``np.float_``, ``multichannel=``). ``albumentations`` draws each transform's
amount from a range and has no ImageNet-C severity scale. The operations themselves are OpenCV's and
scikit-image's.

References
----------
.. [1] Hendrycks, D., Dietterich, T. (2019). Benchmarking neural network robustness to common corruptions
       and perturbations. ICLR 2019 (ImageNet-C, CIFAR-10-C; corruption error CE and mCE).
.. [2] Michaelis, C. et al. (2019). Benchmarking robustness in object detection: autonomous driving when
       winter is coming. arXiv:1907.07484 (the ``imagecorruptions`` package: ImageNet-C for any image size).
.. [3] Mikolajczyk, K., Schmid, C. (2005). A performance evaluation of local descriptors. IEEE TPAMI 27(10)
       (rotation, scale, viewpoint, blur, JPEG and light changes as the tests of local descriptors).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["corrupt", "CORRUPTIONS", "APPEARANCE", "GEOMETRIC", "FAMILIES", "SEVERITIES", "VERSION",
           "ROTATION_DEGREES", "SCALE_FACTORS"]

#: Bumped whenever an output changes: part of every cached view's key.
VERSION = 2
SEVERITIES = (1, 2, 3, 4, 5)

# -- ImageNet-C constants (Hendrycks & Dietterich 2019; imagecorruptions 1.1.2) ----------------------
_GAUSSIAN = (0.08, 0.12, 0.18, 0.26, 0.38)
_SHOT = (60, 25, 12, 5, 3)
_IMPULSE = (0.03, 0.06, 0.09, 0.17, 0.27)
_DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))          # disc radius (px at 224), alias blur
_MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))               # radius, sigma (px at 224)
_ZOOM = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
         np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
_JPEG = (25, 18, 15, 10, 7)
_ELASTIC = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)  # alpha
_IMAGENET_SIDE = 224.0

# -- geometric ---------------------------------------------------------------------------------------
ROTATION_DEGREES = (15.0, 30.0, 45.0, 90.0, 180.0)
SCALE_FACTORS = tuple(float(2.0 ** (0.2 * s * (1 if s % 2 else -1))) for s in SEVERITIES)
_TRANSLATION = (0.05, 0.10, 0.15, 0.20, 0.25)
_PERSPECTIVE = (0.04, 0.08, 0.12, 0.16, 0.20)

APPEARANCE = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "zoom_blur",
              "brightness", "contrast", "pixelate", "jpeg_compression", "elastic_transform")
GEOMETRIC = ("rotation", "scale", "translation", "perspective")
CORRUPTIONS = APPEARANCE + GEOMETRIC
#: Corruption → family (ImageNet-C's grouping, with light and geometry apart).
FAMILIES = {"gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
            "defocus_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
            "brightness": "light", "contrast": "light",
            "pixelate": "digital", "jpeg_compression": "digital", "elastic_transform": "digital",
            "rotation": "geometric", "scale": "geometric", "translation": "geometric", "perspective": "geometric"}


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``image`` corrupted by ``name`` at ``severity`` (0 … 5), deterministic for ``seed``.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W) or (H, W, 3)
        Gray or RGB.
    name : str
        One of :data:`CORRUPTIONS`.
    severity : int
        0 (the image unchanged) to 5.
    seed : int
        Seed of every random draw; the draws do not depend on ``severity``.

    Returns
    -------
    ndarray of uint8, the shape of ``image`` (a new array).

    Raises
    ------
    ValueError
        For an unknown name, a severity outside 0 … 5, or an image that is not uint8 HxW / HxWx3.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer in [0, 5], got {severity!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be uint8 of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    if severity == 0:
        return image.copy()
    rng = np.random.default_rng(int(seed) % 2**63)
    out = _FUNCTIONS[name](image.astype(np.float32) / 255.0, int(severity) - 1, rng)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8).reshape(image.shape)


def _pixel_scale(x: np.ndarray) -> float:
    return min(x.shape[:2]) / _IMAGENET_SIDE


# -- noise -------------------------------------------------------------------------------------------
def _gaussian_noise(x, i, rng):
    return x + rng.standard_normal(x.shape, dtype=np.float32) * _GAUSSIAN[i]


def _shot_noise(x, i, rng):
    # Poisson counts of c photons per unit intensity (fewer photons at higher severity: more noise)
    c = _SHOT[i]
    return (rng.poisson(x.astype(np.float64) * c) / c).astype(np.float32)


def _impulse_noise(x, i, rng):
    # salt and pepper as scikit-image's random_noise(mode="s&p"): a share c of the pixels set to 0 or 1,
    # nested across severities (the same uniform draw per pixel compared with a growing c)
    u, salt = rng.random(x.shape), rng.random(x.shape) < 0.5
    hit = u < _IMPULSE[i]
    return np.where(hit, salt.astype(np.float32), x)


# -- blur --------------------------------------------------------------------------------------------
def _disk(radius: float, alias_blur: float) -> np.ndarray:
    # ImageNet-C's disc (at least 17x17, anti-aliased by a small Gaussian as theirs), each tap weighted by the
    # share of its pixel inside the circle (8x8 sub-samples), so that a radius below a few pixels (a small
    # image) still grows the blur smoothly
    half = max(8, int(math.ceil(radius)))
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    L = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    X, Y = np.meshgrid(L, L)
    n = 2 * half + 1
    inside = ((X ** 2 + Y ** 2) <= radius ** 2).astype(np.float32)
    disk = inside.reshape(n, 8, n, 8).mean(axis=(1, 3))
    disk[half, half] += 1e-6  # a radius below the centre pixel's own samples: the image itself
    disk /= disk.sum()
    k = 3 if half <= 8 else 5
    return cv2.GaussianBlur(disk, (k, k), alias_blur)


def _defocus_blur(x, i, rng):
    radius, alias = _DEFOCUS[i]
    return cv2.filter2D(x, -1, _disk(radius * _pixel_scale(x), alias), borderType=cv2.BORDER_REFLECT_101)


def _motion_blur(x, i, rng):
    # ImageNet-C: the image averaged along a line of 2r+1 steps at an angle in [-45, 45] degrees, Gaussian
    # weights (sigma) from the first step; here one correlation kernel, the borders replicated as theirs
    radius, sigma = (v * _pixel_scale(x) for v in _MOTION[i])
    angle = rng.uniform(-45, 45)
    width = 2 * int(round(radius)) + 1
    steps = np.arange(width)
    weights = np.exp(-steps ** 2 / (2 * max(sigma, 1e-3) ** 2))
    weights /= weights.sum()
    size = 2 * width + 1
    kernel = np.zeros((size, size), np.float32)
    dy, dx = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    for step, w in zip(steps, weights):
        kernel[width + int(round(step * dy)), width + int(round(step * dx))] += w
    return cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def _zoom_blur(x, i, rng):
    # the mean of the image and its central crops enlarged back to full size by each zoom factor
    h, w = x.shape[:2]
    out = x.copy()
    for z in _ZOOM[i]:
        ch, cw = int(math.ceil(h / z)), int(math.ceil(w / z))
        top, left = (h - ch) // 2, (w - cw) // 2
        out += cv2.resize(x[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_LINEAR).reshape(x.shape)
    return out / (len(_ZOOM[i]) + 1)


# -- light -------------------------------------------------------------------------------------------
def _brightness(x, i, rng):
    if x.ndim == 2:
        return x + _BRIGHTNESS[i]
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float32 in: H in degrees, S and V in [0, 1]
    hsv[..., 2] = np.clip(hsv[..., 2] + _BRIGHTNESS[i], 0, 1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _contrast(x, i, rng):
    mean = x.mean(axis=(0, 1), keepdims=True)
    return (x - mean) * _CONTRAST[i] + mean


# -- digital -----------------------------------------------------------------------------------------
def _pixelate(x, i, rng):
    h, w = x.shape[:2]
    c = _PIXELATE[i]
    small = cv2.resize(x, (max(1, int(w * c)), max(1, int(h * c))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT).reshape(x.shape)


def _jpeg_compression(x, i, rng):
    u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    bgr = u8 if u8.ndim == 2 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG[i]])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 gray/BGR image
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if u8.ndim == 2 else cv2.IMREAD_COLOR)
    dec = dec if u8.ndim == 2 else cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
    return dec.astype(np.float32) / 255.0


def _elastic_transform(x, i, rng):
    # imagecorruptions' version at 224 px: a uniform displacement of at most 0.5 % of the side per pixel,
    # smoothed by a Gaussian of 1 % of the side (truncated at 3 sigma) and multiplied by alpha. The field is
    # drawn on a grid whose shorter side is 224 and resized to the image (its pixels scaled with it): drawn
    # at the image's own size, a small image's field would hardly be smoothed and would shuffle pixels
    from scipy.ndimage import gaussian_filter

    h, w = x.shape[:2]
    k = _IMAGENET_SIDE / min(h, w)
    gh, gw = max(1, int(round(h * k))), max(1, int(round(w * k)))
    d = 0.005 * _IMAGENET_SIDE
    field = rng.uniform(-d, d, size=(2, gh, gw))
    sigma = 0.01 * _IMAGENET_SIDE
    out = []
    for f in field:
        smooth = gaussian_filter(f, sigma, mode="reflect", truncate=3).astype(np.float32) * _ELASTIC[i] / k
        out.append(cv2.resize(smooth, (w, h), interpolation=cv2.INTER_AREA if k > 1 else cv2.INTER_LINEAR))
    dy, dx = out
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(x, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).reshape(x.shape)


# -- geometric ---------------------------------------------------------------------------------------
def _background(x: np.ndarray) -> tuple:
    """Median colour of the one-pixel border: what the warps put where the image has no content."""
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]).reshape(-1, 1 if x.ndim == 2 else 3)
    return tuple(float(v) for v in np.median(border, axis=0))


def _affine(x, matrix):
    h, w = x.shape[:2]
    fill = _background(x)
    return cv2.warpAffine(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill if len(fill) == 3 else fill[0]).reshape(x.shape)


def _centre(x) -> tuple[float, float]:
    h, w = x.shape[:2]
    return ((w - 1) / 2.0, (h - 1) / 2.0)


def _rotation(x, i, rng):
    # counter-clockwise on the screen (OpenCV's positive angle), about the centre
    return _affine(x, cv2.getRotationMatrix2D(_centre(x), ROTATION_DEGREES[i], 1.0))


def _scale(x, i, rng):
    return _affine(x, cv2.getRotationMatrix2D(_centre(x), 0.0, SCALE_FACTORS[i]))


def _translation(x, i, rng):
    h, w = x.shape[:2]
    a = rng.uniform(0, 2 * math.pi)
    return _affine(x, np.float32([[1, 0, _TRANSLATION[i] * w * math.cos(a)],
                                  [0, 1, _TRANSLATION[i] * h * math.sin(a)]]))


def _perspective(x, i, rng):
    h, w = x.shape[:2]
    corners = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    amount = rng.uniform(0.25, 1.0, size=(4, 2)).astype(np.float32) * _PERSPECTIVE[i] * np.float32([w, h])
    matrix = cv2.getPerspectiveTransform(corners, corners + inward * amount)
    fill = _background(x)
    return cv2.warpPerspective(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=fill if len(fill) == 3 else fill[0]).reshape(x.shape)


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "motion_blur": _motion_blur, "zoom_blur": _zoom_blur,
    "brightness": _brightness, "contrast": _contrast, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression, "elastic_transform": _elastic_transform,
    "rotation": _rotation, "scale": _scale, "translation": _translation, "perspective": _perspective,
}
