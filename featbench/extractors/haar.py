"""Haar-like features: a learnt subset of scikit-image's features, and OpenCV's cascade detectors.

``haar`` follows Viola & Jones: every rectangle feature of a ``size × size``
window is a candidate, and ``fit`` keeps the few most discriminative ones for
the training images (ranked by the feature importances of a forest of extremely
randomised trees, much as scikit-image's example "Face classification using
Haar-like feature descriptor" does with a random forest).
``transform`` then computes only those with
:func:`skimage.feature.haar_like_feature`, so its cost follows ``n_features``,
not the 190,736 features a 25×25 window holds.

``haar-cascade`` runs one of the pretrained cascades OpenCV ships (a boosted
cascade of Haar-like features, Lienhart & Maydt's extended set) and turns its
response into a short vector: how much it detects, where, and how confidently.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import scipy.sparse as sp
from joblib import parallel_config
from skimage.feature import haar_like_feature
from skimage.transform import integral_image
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray
from featbench.registry import register_extractor

__all__ = ["Haar", "HaarCascade", "FEATURE_TYPES", "haar_feature_boxes", "haar_features", "available_cascades"]

#: scikit-image's Haar-like feature types, in the order ``haar_like_feature`` concatenates them.
FEATURE_TYPES = ("type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4")

# Each feature is (type, r, c, h, w): rectangles of h × w pixels whose top-left corners sit at
# (r + dr * h, c + dc * w) for the (dr, dc) below; its value is sum_k (-1)**(k + 1) * sum(rectangle k),
# which is scikit-image's definition (checked against it in tests/test_haar.py).
_LAYOUT = {
    "type-2-x": ((0, 0), (0, 1)),
    "type-2-y": ((0, 0), (1, 0)),
    "type-3-x": ((0, 0), (0, 1), (0, 2)),
    "type-3-y": ((0, 0), (1, 0), (2, 0)),
    "type-4": ((0, 0), (0, 1), (1, 1), (1, 0)),
}
_REFERENCES = (
    "Viola & Jones 2001, Rapid object detection using a boosted cascade of simple features",
    "Lienhart & Maydt 2002, An extended set of Haar-like features for rapid object detection",
)


@functools.lru_cache(maxsize=4)
def haar_feature_boxes(size: int, feature_types: tuple[str, ...] = FEATURE_TYPES) -> np.ndarray:
    """Every Haar-like feature of a ``size × size`` window, in scikit-image's order.

    Returns an int32 array ``(n, 5)`` of ``(type index in FEATURE_TYPES, r, c, h, w)``:
    row ``i`` is feature ``i`` of ``haar_like_feature(ii, 0, 0, size, size, feature_type=feature_types)``
    (types in the order given, each enumerated by top-left corner ``(r, c)``, then rectangle
    height ``h``, then width ``w``). Unlike ``haar_like_feature_coord`` (Python lists of
    tuples), this is compact and quick: 190,736 features for 25×25 in a few milliseconds.
    """
    blocks = []
    grid = np.arange(size)
    ext = np.arange(1, size + 1)
    r, c, h, w = np.ix_(grid, grid, ext, ext)
    for name in feature_types:
        layout = np.array(_LAYOUT[name])
        rows, cols = layout[:, 0].max() + 1, layout[:, 1].max() + 1
        valid = (r + rows * h <= size) & (c + cols * w <= size)
        idx = np.nonzero(valid)  # C order: (r, c, h, w) lexicographic, as scikit-image enumerates
        block = np.empty((idx[0].size, 5), dtype=np.int32)
        block[:, 0] = FEATURE_TYPES.index(name)
        block[:, 1] = idx[0]
        block[:, 2] = idx[1]
        block[:, 3] = idx[2] + 1
        block[:, 4] = idx[3] + 1
        blocks.append(block)
    out = np.concatenate(blocks) if blocks else np.empty((0, 5), dtype=np.int32)
    out.setflags(write=False)
    return out


def _rectangles(box: np.ndarray) -> list[list[tuple[int, int]]]:
    t, r, c, h, w = (int(v) for v in box)
    return [[(r + dr * h, c + dc * w), (r + dr * h + h - 1, c + dc * w + w - 1)]
            for dr, dc in _LAYOUT[FEATURE_TYPES[t]]]


def skimage_coords(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(feature_coord, feature_type)`` for ``haar_like_feature`` from boxes ``(n, 5)``."""
    coord = np.empty(len(boxes), dtype=object)
    for i, box in enumerate(boxes):
        coord[i] = _rectangles(box)
    ftype = np.array([FEATURE_TYPES[t] for t in boxes[:, 0]], dtype=object)
    return coord, ftype


def _weights(boxes: np.ndarray, size: int) -> sp.csr_matrix:
    """Sparse ``((size + 1)**2, n)`` matrix: padded integral image (flattened) @ W = feature values."""
    side = size + 1
    rows, cols, vals = [], [], []
    for t, name in enumerate(FEATURE_TYPES):
        sel = np.flatnonzero(boxes[:, 0] == t)
        if not sel.size:
            continue
        _, r, c, h, w = boxes[sel].T.astype(np.int64)
        for k, (dr, dc) in enumerate(_LAYOUT[name]):
            sign = 1.0 if k % 2 else -1.0
            r0, c0 = r + dr * h, c + dc * w
            r1, c1 = r0 + h, c0 + w
            for rr, cc, s in ((r1, c1, 1.0), (r0, c1, -1.0), (r1, c0, -1.0), (r0, c0, 1.0)):
                rows.append(rr * side + cc)
                cols.append(sel)
                vals.append(np.full(sel.size, sign * s))
    if not rows:
        return sp.csr_matrix((side * side, len(boxes)))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(side * side, len(boxes)))


def haar_features(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Values ``(n_windows, n_boxes)`` of the features ``boxes`` on square float windows ``(n, s, s)``.

    The same numbers as :func:`skimage.feature.haar_like_feature` (up to float rounding),
    computed for many windows at once as one sparse product with the integral images;
    ``fit`` uses it to score thousands of candidates quickly.
    """
    n, size = windows.shape[0], windows.shape[1]
    padded = np.zeros((n, size + 1, size + 1), dtype=np.float64)
    padded[:, 1:, 1:] = windows.cumsum(axis=1).cumsum(axis=2)
    # On integer windows float32 is exact while every partial sum (at most 16 corner terms) stays below
    # 2**24 (8-bit windows up to 64 px a side), and makes scipy's sparse x dense product much faster.
    exact = 16 * np.abs(padded).max(initial=0.0) < 2**24 and np.array_equal(padded, np.round(padded))
    dtype = np.float32 if exact else np.float64
    weights_t = _weights(boxes, size).T.tocsr().astype(dtype)
    return (weights_t @ np.ascontiguousarray(padded.reshape(n, -1).T, dtype=dtype)).T


def _check_types(value: Any, where: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    wrong = [t for t in names if t not in FEATURE_TYPES]
    if wrong or not names:
        raise ConfigError(
            f"{where}: feature_types must be one or more of {', '.join(FEATURE_TYPES)} (or None for all); got {value!r}"
        )
    return tuple(t for t in FEATURE_TYPES if t in names)  # scikit-image's order, no duplicates


@register_extractor("haar")
class Haar(Extractor):
    """Haar-like features selected on the training images (Viola & Jones).

    The gray image is resized to ``size × size``; a Haar-like feature is the
    difference between pixel sums over 2, 3 or 4 adjacent rectangles, computed
    in constant time from the integral image. A 25×25 window holds 190,736 of
    them (all five types), far more than a classifier needs and slow to compute
    for every image. ``fit`` therefore

    1. draws ``n_candidates`` features at random (all of them when None),
    2. computes them on the training images (at most ``max_images`` of them,
       drawn at random; one sparse product with the integral images,
       :func:`haar_features`),
    3. ranks them by the feature importances of ``n_estimators`` extremely
       randomised trees (:class:`~sklearn.ensemble.ExtraTreesClassifier`, as
       good as a random forest here and several times faster on a thousand
       images) trained on the labels; ties, and fits without labels or with one
       class, fall back to the variance over the training images,

    and keeps the ``n_features`` best. ``transform`` computes just those with
    :func:`skimage.feature.haar_like_feature` (``feature_coord`` and
    ``feature_type``), in decreasing order of importance.

    Parameters
    ----------
    size : int, default=25
        Side of the square window the image is resized to (the native size of the
        ``faces`` set; Viola & Jones used 24). The number of candidates grows as
        ``size**4``: 190,736 at 25, 1.2 million at 40 (48 at most).
    feature_types : str or list of str or None, default=None
        Any of ``"type-2-x"``, ``"type-2-y"``, ``"type-3-x"``, ``"type-3-y"``,
        ``"type-4"`` (edge, line and diagonal features); None means all five.
    n_candidates : int or None, default=20000
        Candidates scored in ``fit``, drawn at random; None scores all of them
        (several times slower at size 25, no better on ``faces``).
    n_features : int, default=200
        Features kept (fewer when there are fewer candidates): the output dimension.
    n_estimators : int, default=200
        Trees of the forest that ranks the candidates.
    max_images : int or None, default=1000
        Training images the ranking uses at most (a random subset beyond that),
        which bounds the fit's time and memory (``max_images × n_candidates``
        float32 values); None uses all.
    random_state : int, RandomState or None, default=0
        Seeds the candidate draw, the image subset and the forest.

    Attributes
    ----------
    feature_index_ : ndarray of int, shape (n_features,)
        Positions of the kept features in the full vector
        ``haar_like_feature(ii, 0, 0, size, size, feature_type=types)``.
    feature_coord_, feature_type_ : ndarray of object
        The same features as scikit-image coordinates and types
        (``draw_haar_like_feature`` can show them).
    feature_importances_ : ndarray of float
        The forest's importance of each kept feature.

    References
    ----------
    .. [1] Viola, P., Jones, M. (2001). Rapid object detection using a boosted
           cascade of simple features. CVPR 2001, pp. I-511-I-518.
    .. [2] Lienhart, R., Maydt, J. (2002). An extended set of Haar-like features
           for rapid object detection. ICIP 2002, pp. I-900-I-903.
    .. [3] scikit-image example "Face classification using Haar-like feature
           descriptor" (random-forest ranking of Haar-like features on LFW).
    .. [4] Geurts, P., Ernst, D., Wehenkel, L. (2006). Extremely randomized trees.
           Machine Learning 63(1), pp. 3-42.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="Haar-like features (scikit-image), most discriminative subset chosen in fit",
        input_size=(25, 25),
        references=_REFERENCES,
        fitted=True,
    )
    _parameter_constraints: ClassVar[dict] = {
        "size": [Interval(Integral, 4, 48, closed="both")],
        "feature_types": [str, list, tuple, None],
        "n_candidates": [Interval(Integral, 1, None, closed="left"), None],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_images": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
    }
    test_params: ClassVar[dict] = {"size": 12, "n_candidates": 500, "n_features": 20, "n_estimators": 10}

    def __init__(
        self,
        size: int = 25,
        feature_types: str | Sequence[str] | None = None,
        n_candidates: int | None = 20000,
        n_features: int = 200,
        n_estimators: int = 200,
        max_images: int | None = 1000,
        random_state: int | None = 0,
    ) -> None:
        self.size = size
        self.feature_types = feature_types
        self.n_candidates = n_candidates
        self.n_features = n_features
        self.n_estimators = n_estimators
        self.max_images = max_images
        self.random_state = random_state

    def _check_params(self) -> None:
        self._types()

    def _types(self) -> tuple[str, ...]:
        return FEATURE_TYPES if self.feature_types is None else _check_types(self.feature_types, "haar")

    def _windows(self, images) -> np.ndarray:
        s = self.size
        out = np.empty((len(images), s, s), dtype=np.float64)
        for i in range(len(images)):
            out[i] = resize(to_gray(images[i]), (s, s))
        return out

    def _fit(self, images, y) -> None:
        types = self._types()
        boxes = haar_feature_boxes(self.size, types)
        rng = check_random_state(self.random_state)
        n_total = len(boxes)
        if self.n_candidates is None or self.n_candidates >= n_total:
            candidates = np.arange(n_total)
        else:
            candidates = np.sort(rng.choice(n_total, self.n_candidates, replace=False))
        rows = np.arange(len(images))
        if self.max_images is not None and len(rows) > self.max_images:
            rows = np.sort(rng.choice(len(rows), self.max_images, replace=False))
        F = haar_features(self._windows([images[int(i)] for i in rows]), boxes[candidates])
        y = None if y is None else np.asarray(y)
        if y is not None and len(y) == len(images):
            y = y[rows]
        variance = F.var(axis=0) if len(F) else np.zeros(len(candidates))
        importance = np.zeros(len(candidates))
        if y is not None and len(y) == len(F) and np.unique(y).size >= 2:
            # the trees are grown on threads (one per core: fits run on the client, not in a worker); each tree's
            # seed is drawn before they are shared out, so the forest is the same for any number of threads
            forest = ExtraTreesClassifier(n_estimators=self.n_estimators, max_features="sqrt",
                                          random_state=rng.randint(2**31 - 1), n_jobs=-1)
            with parallel_config(backend="threading"):
                importance = forest.fit(F, y).feature_importances_
        order = np.lexsort((np.arange(len(candidates)), -variance, -importance))[: self.n_features]
        self.n_candidates_ = len(candidates)
        self.feature_index_ = candidates[order]
        self.feature_importances_ = importance[order]
        self.feature_coord_, self.feature_type_ = skimage_coords(boxes[self.feature_index_])
        self.n_features_out_ = len(order)

    def _transform_batch(self, images) -> np.ndarray:
        s = self.size
        out = np.empty((len(images), self.n_features_out_), dtype=np.float32)
        for i in range(len(images)):
            window = resize(to_gray(images[i]), (s, s)).astype(np.float64)
            out[i] = haar_like_feature(integral_image(window), 0, 0, s, s,
                                       feature_type=self.feature_type_, feature_coord=self.feature_coord_)
        return out

    def report_info(self) -> dict:
        if not hasattr(self, "feature_index_"):
            return {}
        return {"n_candidates": int(self.n_candidates_)}


# =============================================================================
# OpenCV cascades
# =============================================================================

_CASCADE_PREFIX = "haarcascade_"


def available_cascades() -> dict[str, Path]:
    """Cascades shipped with OpenCV (``cv2.data.haarcascades``), short name → XML file.

    The short name drops ``haarcascade_`` and ``.xml``: ``frontalface_default``, ``eye``...
    """
    folder = Path(cv2.data.haarcascades)
    return {p.name[len(_CASCADE_PREFIX):-4]: p for p in sorted(folder.glob(f"{_CASCADE_PREFIX}*.xml"))}


@register_extractor("haar-cascade")
class HaarCascade(Extractor):
    """Response of a pretrained OpenCV Haar cascade (e.g. the frontal-face detector) as features.

    ``cv2.CascadeClassifier`` scans the image at every position and scale with a
    boosted cascade of Haar-like features (Viola & Jones; Lienhart & Maydt's
    extended set). A gray image smaller than ``upscale`` pixels is padded and
    enlarged first (the cascades' windows are 20-24 px), then the raw detections
    (windows that pass every stage, ``detectMultiScale3(..., minNeighbors=0,
    outputRejectLevels=True)``) are grouped as ``detectMultiScale`` does (``cv2.groupRectangles`` with
    ``min_neighbors``, eps 0.2). The vector (10 values) is:

    ====  =========================================================================
    0     number of detections (groups)
    1-4   largest detection's ``x, y, w, h`` as fractions of the image's width and
          height, in the original image's frame (a box reaching into the padding
          gives values slightly outside [0, 1])
    5     raw windows in the largest detection's group (its neighbours)
    6     number of raw windows
    7-8   max and mean of the raw windows' level weights (the last stage's score,
          a confidence)
    9     fraction of raw windows that ended in a detection
    ====  =========================================================================

    An image where nothing is detected gets zeros. Good for: face-like data, or
    any set where "does the detector fire, where and how strongly" separates the
    classes (faces vs background, eyes open vs not) — a detector response as a
    feature, in a few milliseconds per small image. Not for: texture, generic
    objects or anything the cascade was not trained on, where the vector is
    mostly zeros.

    Parameters
    ----------
    cascade : str, default="frontalface_default"
        A cascade shipped with OpenCV, named without ``haarcascade_`` and
        ``.xml`` (``frontalface_default``, ``frontalface_alt``, ``frontalface_alt2``,
        ``frontalface_alt_tree``, ``profileface``, ``eye``, ``eye_tree_eyeglasses``,
        ``smile``, ``fullbody``, ``upperbody``, ...; :func:`available_cascades`
        lists them), or the path of a cascade XML file.
    scale_factor : float, default=1.1
        Step between scanned scales (> 1); smaller is slower and finds more.
    min_neighbors : int, default=3
        Raw windows a group needs beyond the first to count as a detection
        (OpenCV's ``minNeighbors``); 0 keeps every raw window.
    min_size : float, default=0.0
        Smallest detection as a fraction of the shorter side of the (padded,
        enlarged) image; 0 means the cascade's own window (24 px for the face
        cascades).
    upscale : int, default=72
        Images whose shorter side is below this many pixels are taken for tight
        crops: they get the border ``pad``, then are enlarged (bilinear) so that
        the shorter side is ``upscale`` pixels; larger images are scanned as they
        are. 0 never pads nor enlarges. The face cascades' window is 24 px and a
        face in a 25×25 crop is smaller than the crop, so without enlarging
        nothing is found in ``faces``; at 72 px, 96 of its 100 faces get a
        detection and none of its 100 background patches does (89 faces without
        the border).
    pad : float, default=0.25
        Border added on each side of small images (replicated edge pixels), as a
        fraction of the image's side: crops whose object touches the border are
        detected more often. 0 adds none.

    References
    ----------
    .. [1] Viola, P., Jones, M. (2001). Rapid object detection using a boosted
           cascade of simple features. CVPR 2001, pp. I-511-I-518.
    .. [2] Lienhart, R., Maydt, J. (2002). An extended set of Haar-like features
           for rapid object detection. ICIP 2002, pp. I-900-I-903.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="OpenCV Haar cascade detector response (count, largest box, confidence)",
        references=_REFERENCES,
    )
    _parameter_constraints: ClassVar[dict] = {
        "cascade": [str],
        "scale_factor": [Interval(Real, 1.0, None, closed="neither")],
        "min_neighbors": [Interval(Integral, 0, None, closed="left")],
        "min_size": [Interval(Real, 0.0, 1.0, closed="both")],
        "upscale": [Interval(Integral, 0, 4096, closed="both")],
        "pad": [Interval(Real, 0.0, 2.0, closed="both")],
    }
    test_params: ClassVar[dict] = {"upscale": 48, "scale_factor": 1.2}

    _DIM = 10

    def __init__(
        self,
        cascade: str = "frontalface_default",
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: float = 0.0,
        upscale: int = 72,
        pad: float = 0.25,
    ) -> None:
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.upscale = upscale
        self.pad = pad

    def _check_params(self) -> None:
        self._cascade_path()

    def _cascade_path(self) -> Path:
        known = available_cascades()
        if self.cascade in known:
            return known[self.cascade]
        path = Path(self.cascade).expanduser()
        if path.suffix.lower() == ".xml" and path.is_file():
            return path
        raise ConfigError(
            f"haar-cascade: cascade {self.cascade!r} is neither a cascade shipped with OpenCV nor an XML file; "
            f"shipped: {', '.join(known)}"
        )

    def _fit(self, images, y) -> None:
        self.cascade_path_ = str(self._cascade_path())
        detector = self._detector()
        if detector.empty():
            raise ConfigError(f"haar-cascade: OpenCV could not load a cascade from {self.cascade_path_}")
        self.window_size_ = tuple(int(v) for v in detector.getOriginalWindowSize())
        self.n_features_out_ = self._DIM

    # The cv2 classifier is loaded lazily, once per process and thread (a CascadeClassifier must not
    # be shared between threads), and never pickled: workers get the path and load it themselves.
    def _detector(self) -> cv2.CascadeClassifier:
        local = self.__dict__.get("_local")
        if local is None:
            local = self.__dict__.setdefault("_local", threading.local())
        detector = getattr(local, "detector", None)
        if detector is None or getattr(local, "path", None) != self.cascade_path_:
            detector = cv2.CascadeClassifier(self.cascade_path_)
            local.detector, local.path = detector, self.cascade_path_
        return detector

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_local", None)
        return state

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Padded, enlarged gray image, its scale and padding in original pixels."""
        gray = to_gray(image)
        h, w = gray.shape
        if not self.upscale or min(h, w) >= self.upscale:
            return np.ascontiguousarray(gray), 1.0, 0, 0
        # A small image is taken for a tight crop: a replicated border lets the object sit inside the
        # detector's window (on large images the same border makes streaks the detector fires on).
        py, px = round(self.pad * h), round(self.pad * w)
        if py or px:
            gray = cv2.copyMakeBorder(gray, py, py, px, px, cv2.BORDER_REPLICATE)
        scale = self.upscale / min(gray.shape)
        if scale > 1.0:
            gray = resize(gray, (max(1, round(gray.shape[0] * scale)), max(1, round(gray.shape[1] * scale))))
        else:
            scale = 1.0
        return np.ascontiguousarray(gray), scale, py, px

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        h, w = np.asarray(image).shape[:2]
        gray, scale, py, px = self._prepare(image)
        side = round(self.min_size * min(gray.shape))
        min_size = (side, side) if side > 0 else (0, 0)
        raw, _, weights = self._detector().detectMultiScale3(
            gray, scaleFactor=float(self.scale_factor), minNeighbors=0, minSize=min_size, outputRejectLevels=True
        )
        v = np.zeros(self._DIM, dtype=np.float32)
        if len(raw) == 0:
            return v
        weights = np.asarray(weights, dtype=np.float64).ravel()
        rects = [list(map(int, r)) for r in raw]
        if self.min_neighbors > 0:
            groups, neighbours = cv2.groupRectangles(rects, int(self.min_neighbors), 0.2)
        else:
            groups, neighbours = np.asarray(rects), np.ones(len(rects), dtype=np.int32)
        groups = np.asarray(groups).reshape(-1, 4)
        neighbours = np.asarray(neighbours).ravel()
        v[6] = len(rects)
        v[7] = weights.max()
        v[8] = weights.mean()
        if len(groups):
            k = int(np.argmax(groups[:, 2] * groups[:, 3]))
            x, y, bw, bh = groups[k].astype(np.float64)
            v[0] = len(groups)
            v[1:5] = ((x / scale - px) / w, (y / scale - py) / h, bw / scale / w, bh / scale / h)
            v[5] = neighbours[k]
            v[9] = neighbours.sum() / len(rects)
        return v
