"""SIFT and ORB local descriptors (OpenCV), encoded into one vector per image (BoVW, VLAD, Fisher).

Both extractors share one pipeline:

1. the image is converted to gray and resized so that its longer side is at most
   ``max_size`` (and at least ``min_size``, when set); colour SIFT (``color`` other than
   ``"gray"``) also resizes the image's three channels in its colour space to the same size;
2. local descriptors are computed, either at detected keypoints
   (``mode="keypoints"``: OpenCV's detector, at most ``n_features`` of them) or on
   a dense grid (``mode="dense"``: keypoints every ``step`` pixels for each patch
   side in ``scales``, upright, as VLFeat's PHOW / dense SIFT); keypoints and the grid
   are always found on the gray image, and colour SIFT describes each channel at them;
3. the descriptors are encoded against a vocabulary learnt in ``fit`` from the
   *training images only* (:mod:`featbench.extractors.encoding`).

The learnt state (PCA, codebook or Gaussian mixture) is plain numpy arrays, so a
fitted extractor pickles to joblib workers; OpenCV objects are created lazily in
each process and never pickled.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from numbers import Integral, Real
from typing import Any, ClassVar

import cv2
import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, to_gray, to_rgb
from featbench.extractors.encoding import check_pyramid, make_encoder
from featbench.registry import register_extractor

__all__ = ["SIFT", "ORB", "LocalFeatures", "dense_grid", "unpack_bits", "color_channels", "SIFT_COLORS"]

# Images described and encoded together in transform: bounds memory, keeps the encode vectorised.
_BATCH = 64

# OpenCV's SIFT descriptor spans 4 bins of 1.5 * KeyPoint.size each (SIFT_DESCR_SCL_FCTR = 3 times
# half the size), so a square patch of side p needs KeyPoint.size = p / 6.
_SIFT_PATCH_PER_SIZE = 6.0
# ORB's rBRIEF reads a fixed 31x31 patch (patchSize) of the level image.
_ORB_PATCH = 31


def dense_grid(height: int, width: int, patch: int, step: int) -> np.ndarray:
    """Centres ``(n, 2)`` float32 ``(x, y)`` of a regular grid of ``patch``-sized squares, ``step`` apart.

    Squares lie inside the image (as VLFeat's dense SIFT frames do); the grid is centred, so the
    margin left over is split between both sides. Along a side shorter than ``patch`` one centre
    is placed in the middle. ``n = nx * ny`` with ``nx = (width - patch) // step + 1`` (or 1).
    """
    def axis(length: int) -> np.ndarray:
        if length < patch:
            return np.array([(length - 1) / 2.0])
        n = (length - patch) // step + 1
        start = (length - patch - (n - 1) * step) / 2.0 + (patch - 1) / 2.0
        return start + step * np.arange(n)

    xs, ys = axis(width), axis(height)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def _keypoint_array(centres: np.ndarray, size: float, octave: int) -> np.ndarray:
    """Upright (angle 0) ``cv2.KeyPoint`` objects at ``centres``, as an object array (masks select them in C).

    Built once per image shape and patch side and cached; ``cv2.KeyPoint_convert`` cannot be used
    because it leaves the angle at -1, which SIFT reads as a 1 degree rotation.
    """
    out = np.empty(len(centres), dtype=object)
    out[:] = [cv2.KeyPoint(float(x), float(y), size, 0.0, 0.0, octave) for x, y in centres]
    return out


#: Colour spaces of colour SIFT (van de Sande et al. 2010), besides ``"gray"``.
SIFT_COLORS = ("hsv", "opponent", "rgb")


def color_channels(image: np.ndarray, color: str) -> np.ndarray:
    """uint8 ``HxWx3`` channels that colour SIFT describes, from a gray or RGB image.

    * ``rgb``: R, G, B;
    * ``hsv``: OpenCV's ``COLOR_RGB2HSV`` (hue 0..179, saturation and value 0..255), as
      :func:`featbench.extractors.color.to_space` gives it;
    * ``opponent``: van de Sande et al.'s opponent colours ``O1 = (R - G) / √2``,
      ``O2 = (R + G - 2B) / √6``, ``O3 = (R + G + B) / √3``, each mapped linearly from its
      range onto 0..255 (OpenCV's SIFT reads 8-bit images) and rounded: ``(R - G + 255) / 2``,
      ``(R + G - 2B + 510) / 4`` and ``(R + G + B) / 3``. SIFT descriptors are normalised, so
      the scale factors do not change them; only the rounding to 8 bits does, slightly.

    A gray image is first made RGB with equal channels (:func:`featbench.images.to_rgb`),
    as the colour histograms do: its colour channels are then constant (hue and saturation
    0, O1 and O2 mid-range) and their descriptors zero, so it keeps the dimension.
    """
    rgb = np.ascontiguousarray(to_rgb(image))
    if color == "rgb":
        return rgb
    if color == "hsv":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    if color == "opponent":
        r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
        o1 = (r - g + 255) / 2.0
        o2 = (r + g - 2 * b + 510) / 4.0
        o3 = (r + g + b) / 3.0
        return np.rint(np.stack([o1, o2, o3], axis=-1)).astype(np.uint8)
    raise ConfigError(f"color must be one of 'gray', {', '.join(map(repr, SIFT_COLORS))}; got {color!r}")


def unpack_bits(descriptors: np.ndarray) -> np.ndarray:
    """Binary descriptors ``(n, bytes)`` uint8 → ``(n, 8 * bytes)`` float32 of 0/1.

    The squared Euclidean distance between two unpacked descriptors equals the Hamming
    distance between the packed ones, so k-means and Gaussian mixtures on the unpacked
    bits cluster by Hamming distance (their centres are per-bit frequencies).
    ``np.packbits(unpack_bits(d).astype(np.uint8), axis=1)`` gives back ``d``.
    """
    d = np.ascontiguousarray(descriptors, dtype=np.uint8)
    return np.unpackbits(d, axis=1).astype(np.float32)


class LocalFeatures(Extractor):
    """Base of local-descriptor extractors: resize, detect or grid, describe, encode.

    Subclasses implement :meth:`_detect_describe` (keypoint mode) and :meth:`_dense_describe`
    (dense mode), returning ``(descriptors float32 (n, d), positions (n, 2) in pixels)``.
    """

    cache_version: ClassVar[int] = 1
    _common_constraints: ClassVar[dict] = {
        "assignment": [StrOptions({"hard", "soft"})],
        "codebook_images": [Interval(Integral, 1, None, closed="left"), None],
        "encoding": [StrOptions({"bovw", "vlad", "fisher"})],
        "max_descriptors": [Interval(Integral, 1, None, closed="left")],
        "max_size": [Interval(Integral, 8, None, closed="left"), None],
        "min_contrast": [Interval(Real, 0, None, closed="left")],
        "min_size": [Interval(Integral, 1, None, closed="left"), None],
        "mode": [StrOptions({"keypoints", "dense"})],
        "n_features": [Interval(Integral, 0, None, closed="left")],
        "n_words": [Interval(Integral, 2, None, closed="left")],
        "pca": [Interval(Integral, 1, None, closed="left"), None],
        "pyramid": [list, tuple],
        "random_state": ["random_state"],
        "scales": [list, tuple],
        "step": [Interval(Integral, 1, None, closed="left")],
    }

    # -- parameters -------------------------------------------------------------
    def _check_params(self) -> None:
        name = type(self).__name__.lower()
        check_pyramid(self.pyramid, f"{name}: pyramid")
        ok = isinstance(self.scales, (list, tuple)) and len(self.scales) > 0 and all(
            isinstance(s, Integral) and not isinstance(s, bool) and s >= 4 for s in self.scales
        )
        if not ok:
            raise ConfigError(
                f"{name}: scales must be a non-empty list of patch sides in pixels, each >= 4, "
                f"such as [16, 24, 32]; got {self.scales!r}"
            )
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ConfigError(f"{name}: min_size={self.min_size} is larger than max_size={self.max_size}")
        if self.max_descriptors < self.n_words:
            raise ConfigError(
                f"{name}: max_descriptors={self.max_descriptors} must be at least n_words={self.n_words}"
            )

    # -- per-thread, never pickled: OpenCV detectors and the keypoint grids of each image shape ------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_local", None)
        return state

    def _cache(self) -> dict:
        """This thread's cache (detectors are not shared between threads of the threading backend)."""
        local = self.__dict__.get("_local")
        if local is None:
            local = self.__dict__.setdefault("_local", threading.local())
        cache = getattr(local, "cache", None)
        if cache is None:
            cache = local.cache = {}
        return cache

    # -- the descriptor stage -----------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Gray uint8 image resized so that its longer side is within ``[min_size, max_size]``."""
        return self._resized(to_gray(image))

    def _resized(self, image: np.ndarray) -> np.ndarray:
        """``image`` (gray or with channels) resized so that its longer side is within ``[min_size, max_size]``."""
        h, w = image.shape[:2]
        longer = max(h, w)
        target = longer
        if self.max_size is not None and longer > self.max_size:
            target = self.max_size
        if self.min_size is not None and longer < self.min_size:
            target = self.min_size
        if target == longer:
            return np.ascontiguousarray(image)
        s = target / longer
        size = (max(1, round(w * s)), max(1, round(h * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(image), size, interpolation=interp)

    def _channels(self, image: np.ndarray) -> list[np.ndarray] | None:
        """Resized uint8 channels to describe besides the gray image's keypoints; None: the gray image itself."""
        return None

    def describe_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors ``(n, d)`` and keypoint positions ``(n, 2)`` as ``(x, y)`` in ``[0, 1]``.

        This is the whole per-image work before encoding; ``n`` may be 0. Descriptors
        keep their native type: float32 for SIFT, packed uint8 bits (as OpenCV gives
        them, 32 bytes) for ORB, 32 times smaller than the floats the encoder works on
        (:meth:`as_float` converts).
        """
        gray = self.prepare(image)
        channels = self._channels(image)
        if self.mode == "dense":
            desc, pts = self._dense_describe(gray, channels)
        else:
            desc, pts = self._detect_describe(gray, channels)
        if len(desc):
            keep = desc.any(axis=1)  # an all-zero descriptor has seen no gradient at all
            if not keep.all():
                desc, pts = desc[keep], pts[keep]
        desc = self._postprocess(desc)
        h, w = gray.shape
        pos = (pts + 0.5) / np.array([w, h], dtype=np.float32) if len(pts) else pts.reshape(0, 2)
        return desc, np.clip(pos, 0.0, 1.0).astype(np.float32)

    def describe(self, images) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """:meth:`describe_one` for each image: lists of descriptors and of positions."""
        out = [self.describe_one(images[i]) for i in range(len(images))]
        return [d for d, _ in out], [p for _, p in out]

    def _grid(self, gray: np.ndarray) -> list[tuple[int, np.ndarray, Any]]:
        """Per scale: patch side, grid centres (pixels) and whatever the subclass caches for them."""
        key = ("grid", gray.shape)
        cache = self._cache()
        if key not in cache:
            h, w = gray.shape
            cache[key] = [(p, dense_grid(h, w, p, self.step)) for p in self.scales]
        return cache[key]

    def _integral_gradient(self, gray: np.ndarray) -> np.ndarray | None:
        """Integral image of the gradient magnitude (central differences), or None when unused."""
        if self.min_contrast <= 0:
            return None
        g = gray.astype(np.float32)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
        return cv2.integral(cv2.magnitude(gx, gy), sdepth=cv2.CV_64F)

    def _contrast_keep(self, integral: np.ndarray | None, centres: np.ndarray, patch: int) -> np.ndarray:
        """Mask of grid centres whose ``patch`` square has a mean gradient magnitude >= ``min_contrast``."""
        if integral is None:
            return np.ones(len(centres), dtype=bool)
        h, w = integral.shape[0] - 1, integral.shape[1] - 1
        half = patch / 2.0
        x0 = np.clip(np.round(centres[:, 0] + 0.5 - half).astype(np.int64), 0, w)
        y0 = np.clip(np.round(centres[:, 1] + 0.5 - half).astype(np.int64), 0, h)
        x1 = np.clip(x0 + patch, 0, w)
        y1 = np.clip(y0 + patch, 0, h)
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return total / area >= self.min_contrast

    # -- for subclasses -----------------------------------------------------------------------------
    def _detect_describe(self, gray: np.ndarray, channels: list[np.ndarray] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _dense_describe(self, gray: np.ndarray, channels: list[np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _postprocess(self, desc: np.ndarray) -> np.ndarray:
        return desc

    def as_float(self, desc: np.ndarray) -> np.ndarray:
        """Descriptors from :meth:`describe_one` as the float32 vectors the encoder clusters."""
        return np.asarray(desc, dtype=np.float32)

    # -- fit / transform -----------------------------------------------------------------------------
    def _encoder(self):
        return make_encoder(
            self.encoding,
            n_words=self.n_words,
            assignment=self.assignment,
            pca=self.pca,
            pyramid=tuple(self.pyramid),
            max_descriptors=self.max_descriptors,
            random_state=self.random_state,
        )

    def _fit(self, images, y) -> None:
        rng = check_random_state(self.random_state)
        n = len(images)
        order = rng.permutation(n)
        if self.codebook_images is not None:
            order = np.sort(order[: self.codebook_images])
        else:
            order = np.arange(n)
        # Keep at most twice the fair share of each image, so memory stays near 2 * max_descriptors
        # whatever the number of images; the encoder then draws its uniform sample from the pool.
        per_image = max(1, math.ceil(2 * self.max_descriptors / max(len(order), 1)))
        pool, counts = [], []
        for i in order:
            desc, _ = self.describe_one(images[int(i)])
            counts.append(len(desc))
            if len(desc) > per_image:
                desc = desc[np.sort(rng.choice(len(desc), per_image, replace=False))]
            pool.append(desc)
        self.descriptors_per_image_ = float(np.mean(counts)) if counts else 0.0
        pool = [self.as_float(d) for d in pool]
        self.encoder_ = self._encoder().set_params(random_state=rng.randint(2**31 - 1)).fit(pool)
        self.n_features_out_ = self.encoder_.n_features_out_

    def _transform_batch(self, images) -> np.ndarray:
        out = np.empty((len(images), self.n_features_out_), dtype=np.float32)
        for start in range(0, len(images), _BATCH):
            stop = min(start + _BATCH, len(images))
            desc, pos = self.describe([images[i] for i in range(start, stop)])
            out[start:stop] = self.encoder_.transform([self.as_float(d) for d in desc], pos)
        return out

    def report_info(self) -> dict:
        if not hasattr(self, "encoder_"):
            return {}
        return {"descriptors_per_image": round(self.descriptors_per_image_, 1),
                "codebook_not_converged": int(getattr(self.encoder_, "not_converged_", 0))}


class _ColorSpec:
    """A class's :class:`ExtractorSpec`; read from an instance whose ``color`` is not ``"gray"``, the
    same spec with ``color="rgb"`` (it reads the image's colour)."""

    def __init__(self, spec: ExtractorSpec) -> None:
        self.spec = spec

    def __get__(self, obj, owner=None) -> ExtractorSpec:
        if obj is not None and getattr(obj, "color", "gray") != "gray":
            return replace(self.spec, color="rgb")
        return self.spec


_SHARED_DOC = """
    mode : {"keypoints", "dense"}, default="keypoints"
        ``keypoints``: descriptors at detected keypoints. ``dense``: upright descriptors on a
        grid every ``step`` pixels for each patch side in ``scales`` (VLFeat's PHOW); grid
        patches whose mean gradient magnitude is below ``min_contrast`` are skipped.
    n_features : int, default=500
        Most keypoints kept per image in keypoint mode (the strongest); 0 means no limit.
    step : int, default=8
        Grid step in pixels (dense mode), in the resized image.
    scales : sequence of int, default=(16, 24, 32)
        Patch sides in pixels (dense mode); each gives one grid.
    min_contrast : float, default=1.0
        Dense mode: mean gradient magnitude (gray levels per pixel) a patch needs to be
        described; flat patches (background, JPEG noise) are skipped. 0 keeps all.
    max_size : int or None, default=320
        Longer image side is reduced to this before description (speed); None keeps it.
    min_size : int or None, default=None
        Longer image side is enlarged to this (for tiny images such as 8x8 digits).
    encoding : {"bovw", "vlad", "fisher"}, default="bovw"
        How descriptors become one vector (:mod:`featbench.extractors.encoding`): bag of
        visual words (dimension ``n_words``), VLAD (``n_words * D``) or improved Fisher
        vector (``2 * n_words * D``), ``D`` being the descriptor or ``pca`` dimension; each
        times ``sum(l**2 for l in pyramid)``.
    n_words : int, default=128
        Codebook size (k-means words, or Gaussian components for ``fisher``).
    assignment : {"hard", "soft"}, default="hard"
        BoVW only: nearest word, or a Gaussian-kernel softmax over the 5 nearest words.
    pca : int or None, default=None
        Project descriptors to this many principal components before the codebook
        (64 is usual for SIFT with Fisher vectors).
    pyramid : sequence of int, default=(1,)
        Spatial pyramid grid sizes, e.g. ``(1, 2)`` for 1x1 + 2x2 cells.
    codebook_images : int or None, default=None
        Learn the codebook from this many training images drawn at random (VLFeat's
        PHOW example uses 30 per class); None uses all training images.
    max_descriptors : int, default=100_000
        Cap on the random sample of training descriptors the codebook is learnt from.
    random_state : int, RandomState or None, default=0
        Seeds the image and descriptor sampling, k-means, PCA and the mixture."""

_SHARED_REFS = """
    .. [C] Csurka, G., Dance, C., Fan, L., Willamowski, J., Bray, C. (2004). Visual categorization
           with bags of keypoints. ECCV Workshop on Statistical Learning in Computer Vision.
    .. [J] Jégou, H., Douze, M., Schmid, C., Pérez, P. (2010). Aggregating local descriptors into
           a compact image representation. CVPR 2010.
    .. [P] Perronnin, F., Sánchez, J., Mensink, T. (2010). Improving the Fisher kernel for
           large-scale image classification. ECCV 2010.
    .. [L] Lazebnik, S., Schmid, C., Ponce, J. (2006). Beyond bags of features: spatial pyramid
           matching for recognizing natural scene categories. CVPR 2006.
    .. [B] Bosch, A., Zisserman, A., Muñoz, X. (2007). Image classification using random forests
           and ferns. ICCV 2007 (PHOW); Vedaldi, A., Fulkerson, B. (2008). VLFeat: an open and
           portable library of computer vision algorithms, https://www.vlfeat.org."""


@register_extractor("sift")
class SIFT(LocalFeatures):
    __doc__ = f"""SIFT descriptors (OpenCV ``SIFT_create``) encoded by BoVW, VLAD or Fisher vectors.

    In keypoint mode, OpenCV's difference-of-Gaussians detector finds the keypoints
    (rotation and scale invariant). In dense mode, upright descriptors are computed on
    a grid; a patch of side ``p`` is a keypoint of size ``p / 6`` (OpenCV's descriptor
    spans 6 keypoint sizes), read from the Gaussian-pyramid level whose blur matches
    the patch (``sigma = p / 12``), as in PHOW. Descriptors are 128 floats on
    OpenCV's scale (norm about 512); with ``root_sift`` each is L1-normalised and
    square-rooted (RootSIFT: Euclidean distance then compares them by the Hellinger kernel).

    Parameters
    ----------{_SHARED_DOC}
    root_sift : bool, default=False
        Use RootSIFT descriptors (each channel's 128-d block on its own, in colour).
    color : {"gray", "hsv", "opponent", "rgb"}, default="gray"
        Colour SIFT (van de Sande et al. 2010): keypoints (or the dense grid, and its
        ``min_contrast`` test) come from the gray image as in ``"gray"``; each of the three
        channels of the image in that colour space (:func:`color_channels`: HSV-SIFT,
        OpSIFT, RGB-SIFT) is then described at the same keypoints by OpenCV's SIFT, and the
        three 128-d descriptors are concatenated (384-d per keypoint, channel by channel)
        before encoding; use ``pca`` with VLAD and Fisher vectors. A gray image is
        described as an RGB image with three equal channels (same dimension; its colour
        channels are constant). ``"gray"`` gives exactly the gray features.

    References
    ----------
    .. [1] Lowe, D. G. (2004). Distinctive image features from scale-invariant keypoints.
           IJCV 60(2), 91-110.
    .. [2] Arandjelović, R., Zisserman, A. (2012). Three things everyone should know to
           improve object retrieval. CVPR 2012 (RootSIFT).
    .. [3] van de Sande, K. E. A., Gevers, T., Snoek, C. G. M. (2010). Evaluating color
           descriptors for object and scene recognition. IEEE TPAMI 32(9), 1582-1596
           (HSV-SIFT, opponent SIFT, RGB-SIFT).{_SHARED_REFS}
    """

    spec = _ColorSpec(ExtractorSpec(
        family="classical",
        color="gray",
        description="SIFT (OpenCV), keypoints or dense, encoded by BoVW / VLAD / Fisher vector",
        references=(
            "Lowe 2004, Distinctive image features from scale-invariant keypoints",
            "Csurka et al. 2004, Visual categorization with bags of keypoints",
            "Jégou et al. 2010, Aggregating local descriptors into a compact image representation",
            "Perronnin, Sánchez & Mensink 2010, Improving the Fisher kernel for large-scale image classification",
            "Lazebnik, Schmid & Ponce 2006, Beyond bags of features",
            "Bosch, Zisserman & Muñoz 2007, Image classification using random forests and ferns (PHOW)",
            "Arandjelović & Zisserman 2012, Three things everyone should know to improve object retrieval",
            "van de Sande, Gevers & Snoek 2010, Evaluating color descriptors for object and scene recognition",
        ),
        fitted=True,
        parallel=True,
    ))
    #: Parameters added after features were first cached, with the default that computes what was cached
    #: before them: a feature-cache key that leaves them out at that default keeps existing entries valid.
    cache_key_defaults: ClassVar[dict] = {"color": "gray"}
    _parameter_constraints: ClassVar[dict] = {
        **LocalFeatures._common_constraints,
        "root_sift": ["boolean"],
        "color": [StrOptions({"gray", *SIFT_COLORS})],
    }
    test_params: ClassVar[dict] = {
        "mode": "dense", "step": 6, "scales": (12,), "n_words": 4, "max_descriptors": 2000, "min_contrast": 0.0,
    }

    def __init__(
        self,
        mode: str = "keypoints",
        n_features: int = 500,
        step: int = 8,
        scales: tuple[int, ...] = (16, 24, 32),
        min_contrast: float = 1.0,
        max_size: int | None = 320,
        min_size: int | None = None,
        encoding: str = "bovw",
        n_words: int = 128,
        assignment: str = "hard",
        pca: int | None = None,
        pyramid: tuple[int, ...] = (1,),
        codebook_images: int | None = None,
        max_descriptors: int = 100_000,
        random_state: Any = 0,
        root_sift: bool = False,
        color: str = "gray",
    ) -> None:
        self.mode = mode
        self.n_features = n_features
        self.step = step
        self.scales = scales
        self.min_contrast = min_contrast
        self.max_size = max_size
        self.min_size = min_size
        self.encoding = encoding
        self.n_words = n_words
        self.assignment = assignment
        self.pca = pca
        self.pyramid = pyramid
        self.codebook_images = codebook_images
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.root_sift = root_sift
        self.color = color

    def _sift(self) -> cv2.SIFT:
        cache = self._cache()
        if "sift" not in cache:
            cache["sift"] = cv2.SIFT_create(nfeatures=self.n_features if self.mode == "keypoints" else 0)
        return cache["sift"]

    def _channels(self, image):
        if self.color == "gray":
            return None
        chans = color_channels(self._resized(to_rgb(image)), self.color)  # resized in RGB: hue is circular
        return [np.ascontiguousarray(chans[..., i]) for i in range(chans.shape[2])]

    def _describe_channels(self, channels, kps) -> np.ndarray | None:
        """Descriptors of each channel at ``kps`` (given, so none is moved or dropped), side by side."""
        sift = self._sift()
        blocks = []
        for channel in channels:
            out_kps, desc = sift.compute(channel, kps)
            if desc is None or len(out_kps) != len(kps):
                return None
            blocks.append(desc)
        return np.hstack(blocks)

    def _empty(self):
        return np.empty((0, self._descriptor_dim()), np.float32), np.empty((0, 2), np.float32)

    def _descriptor_dim(self) -> int:
        return 128 if self.color == "gray" else 3 * 128

    def _detect_describe(self, gray, channels=None):
        if channels is None:
            kps, desc = self._sift().detectAndCompute(gray, None)
        else:  # keypoints (position, scale, orientation) of the gray image, described in each channel
            kps = self._sift().detect(gray, None)
            desc = self._describe_channels(channels, kps) if len(kps) else None
        if desc is None or not len(kps):
            return self._empty()
        return desc, cv2.KeyPoint_convert(kps).reshape(-1, 2)

    def _dense_keypoints(self, gray) -> list[tuple[np.ndarray, tuple]]:
        key = ("sift-kps", gray.shape)
        cache = self._cache()
        if key not in cache:
            n_layers = 3  # OpenCV's default nOctaveLayers
            per_scale = []
            for patch, centres in self._grid(gray):
                # The pyramid image whose blur is nearest the patch's sigma = p / 12.
                level = max(0.0, math.log2(patch / 12.0 / 1.6) * n_layers)
                octave, layer = divmod(int(round(level)), n_layers)
                packed = octave | (layer << 8)
                size = patch / _SIFT_PATCH_PER_SIZE
                kps = _keypoint_array(centres, size, packed)
                per_scale.append((patch, centres, kps))
            cache[key] = per_scale
        return cache[key]

    def _dense_describe(self, gray, channels=None):
        descs, pts = [], []
        integral = self._integral_gradient(gray)  # the contrast test reads the gray image in every colour
        for patch, centres, kps in self._dense_keypoints(gray):
            keep = self._contrast_keep(integral, centres, patch)
            if not keep.any():
                continue
            chosen = tuple(kps if keep.all() else kps[keep])
            if channels is None:
                out_kps, desc = self._sift().compute(gray, chosen)
            else:
                out_kps, desc = chosen, self._describe_channels(channels, chosen)
            if desc is None or not len(out_kps):
                continue
            descs.append(desc)
            pts.append(centres[keep] if len(out_kps) == int(keep.sum()) else cv2.KeyPoint_convert(out_kps))
        if not descs:
            return self._empty()
        return np.concatenate(descs), np.concatenate(pts).reshape(-1, 2)

    def _postprocess(self, desc):
        desc = np.asarray(desc, dtype=np.float32)
        if self.root_sift and len(desc) and desc.shape[1] == 128:
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
        elif self.root_sift and len(desc):
            # per 128-d block: each channel's descriptor is a SIFT descriptor of its own
            blocks = desc.reshape(len(desc), -1, 128)
            blocks = np.sqrt(blocks / np.maximum(blocks.sum(axis=2, keepdims=True), 1e-12))
            desc = np.ascontiguousarray(blocks.reshape(len(desc), -1), dtype=np.float32)
        return desc


@register_extractor("orb")
class ORB(LocalFeatures):
    __doc__ = f"""ORB binary descriptors (OpenCV ``ORB_create``) encoded by BoVW, VLAD or Fisher vectors.

    ORB's 256-bit rBRIEF descriptors are kept packed (32 bytes, as OpenCV gives them)
    until encoding, where they are unpacked to 256 floats of 0/1 (:func:`unpack_bits`).
    Squared Euclidean distance between unpacked descriptors *is* their Hamming distance, so the k-means codebook (and VLAD residuals, and the
    Gaussian mixture) work in the space where ORB descriptors are meant to be compared;
    a word is the per-bit frequency of its cluster. In dense mode, the image is scaled
    by ``31 / p`` for each patch side ``p`` in ``scales`` so that ORB's fixed 31x31
    patch covers ``p`` pixels of the image, and upright descriptors are computed on the
    grid (positions are reported in the original resized image).

    Parameters
    ----------{_SHARED_DOC}

    References
    ----------
    .. [1] Rublee, E., Rabaud, V., Konolige, K., Bradski, G. (2011). ORB: an efficient
           alternative to SIFT or SURF. ICCV 2011.{_SHARED_REFS}
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="ORB (OpenCV), binary descriptors as 0/1 bits, encoded by BoVW / VLAD / Fisher",
        references=(
            "Rublee et al. 2011, ORB: an efficient alternative to SIFT or SURF",
            "Csurka et al. 2004, Visual categorization with bags of keypoints",
            "Jégou et al. 2010, Aggregating local descriptors into a compact image representation",
            "Perronnin, Sánchez & Mensink 2010, Improving the Fisher kernel for large-scale image classification",
            "Lazebnik, Schmid & Ponce 2006, Beyond bags of features",
        ),
        fitted=True,
        parallel=True,
    )
    _parameter_constraints: ClassVar[dict] = dict(LocalFeatures._common_constraints)
    test_params: ClassVar[dict] = {
        "mode": "dense", "step": 6, "scales": (16,), "n_words": 4, "max_descriptors": 2000, "min_contrast": 0.0,
    }

    def __init__(
        self,
        mode: str = "keypoints",
        n_features: int = 500,
        step: int = 8,
        scales: tuple[int, ...] = (16, 24, 32),
        min_contrast: float = 1.0,
        max_size: int | None = 320,
        min_size: int | None = None,
        encoding: str = "bovw",
        n_words: int = 128,
        assignment: str = "hard",
        pca: int | None = None,
        pyramid: tuple[int, ...] = (1,),
        codebook_images: int | None = None,
        max_descriptors: int = 100_000,
        random_state: Any = 0,
    ) -> None:
        self.mode = mode
        self.n_features = n_features
        self.step = step
        self.scales = scales
        self.min_contrast = min_contrast
        self.max_size = max_size
        self.min_size = min_size
        self.encoding = encoding
        self.n_words = n_words
        self.assignment = assignment
        self.pca = pca
        self.pyramid = pyramid
        self.codebook_images = codebook_images
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    def as_float(self, desc: np.ndarray) -> np.ndarray:
        return unpack_bits(desc)

    def _orb(self, dense: bool = False) -> cv2.ORB:
        cache = self._cache()
        key = "orb-dense" if dense else "orb"
        if key not in cache:
            if dense:
                # Grid keypoints are given; only the border filter matters: a 31x31 patch needs 16 px.
                cache[key] = cv2.ORB_create(nfeatures=1, nlevels=1, edgeThreshold=_ORB_PATCH // 2,
                                            patchSize=_ORB_PATCH)
            else:
                cache[key] = cv2.ORB_create(nfeatures=max(self.n_features, 1) if self.n_features else 100_000)
        return cache[key]

    def _detect_describe(self, gray, channels=None):
        kps, desc = self._orb().detectAndCompute(gray, None)
        if desc is None or not len(kps):
            return np.empty((0, 32), np.uint8), np.empty((0, 2), np.float32)
        return desc, cv2.KeyPoint_convert(kps).reshape(-1, 2)

    def _dense_describe(self, gray, channels=None):
        h, w = gray.shape
        orb = self._orb(dense=True)
        cache = self._cache()
        descs, pts = [], []
        integral = self._integral_gradient(gray)
        for patch, centres in self._grid(gray):
            keep = self._contrast_keep(integral, centres, patch)
            if not keep.any():
                continue
            f = _ORB_PATCH / patch
            sw, sh = max(1, round(w * f)), max(1, round(h * f))
            key = ("orb-kps", gray.shape, patch)
            if key not in cache:
                scaled = (centres + 0.5) * np.array([sw / w, sh / h], dtype=np.float32) - 0.5
                cache[key] = _keypoint_array(scaled, float(_ORB_PATCH), 0)
            kps = cache[key]
            interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            img = gray if (sw, sh) == (w, h) else cv2.resize(gray, (sw, sh), interpolation=interp)
            out_kps, desc = orb.compute(img, tuple(kps if keep.all() else kps[keep]))
            if desc is None or not len(out_kps):
                continue
            descs.append(desc)
            xy = cv2.KeyPoint_convert(out_kps).reshape(-1, 2)
            pts.append((xy + 0.5) * np.array([w / sw, h / sh], dtype=np.float32) - 0.5)
        if not descs:
            return np.empty((0, 32), np.uint8), np.empty((0, 2), np.float32)
        return np.concatenate(descs), np.concatenate(pts)
