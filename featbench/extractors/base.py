"""The extractor contract: a scikit-learn transformer from images to ``(n, d)`` float32."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featbench.images import as_uint8_images, to_gray, to_rgb

__all__ = ["Extractor", "ExtractorSpec", "to_gray", "to_rgb", "resize"]


@dataclass(frozen=True)
class ExtractorSpec:
    """What a user needs to know about an extractor before running it.

    Attributes
    ----------
    family : {"classical", "deep"}
    color : {"gray", "rgb"}
        Colour the extractor works in; inputs are converted.
    input_size : tuple of int or None
        Native input size ``(height, width)``, or None when any size works.
    description : str
        One line, shown by ``featbench list``.
    requires : tuple of str
        Optional Python packages it needs beyond the core dependencies.
    references : tuple of str
        Papers, "Author Year, Title".
    fitted : bool
        True when ``fit`` learns from training images (codebooks, networks);
        the runner then fits per split on training images only.
    parallel : bool
        True when images may be split across worker processes.
    """

    family: str
    color: str
    description: str
    input_size: tuple[int, int] | None = None
    requires: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    fitted: bool = False
    parallel: bool = True


class Extractor(TransformerMixin, BaseEstimator):
    """Base class of featbench extractors.

    Subclasses set a class-level :class:`ExtractorSpec` as ``spec``, store their
    keyword parameters in ``__init__`` (and do nothing else there), and implement
    either :meth:`_transform_one` (one image → 1-D vector) or :meth:`_transform_batch`.
    Extractors that learn from images override :meth:`_fit` and set
    ``spec.fitted = True``.

    ``fit`` and ``transform`` accept any sequence of images (an
    :class:`~featbench.datasets.ImageSet`, a list of arrays, or an array
    ``(n, h, w[, 3])``); each image is read through
    :func:`featbench.images.as_uint8_image` (the file loader's rules: uint16 keeps its
    high byte, float in [0, 1] is scaled by 255, alpha is composited onto white, other
    inputs raise :class:`~featbench.errors.ImageError`), so subclasses always see uint8
    ``HxW`` or ``HxWx3`` images. A uint8 array or ``ArrayImageSet`` is passed through
    as it is. ``transform`` returns a C-contiguous float32 array ``(n, d)``, also for
    an empty input (``(0, d)``).
    """

    spec: ClassVar[ExtractorSpec] = ExtractorSpec(family="classical", color="gray", description="")
    _parameter_constraints: ClassVar[dict] = {}
    #: Parameters that keep the extractor quick on tiny images in the common test battery
    #: (``tests/test_common.py``), e.g. a small input size for a CNN.
    test_params: ClassVar[dict] = {}

    # -- sklearn API ------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], y: Any = None) -> Extractor:
        """Validate parameters and learn what needs learning from ``images``."""
        self.validate()
        _check_images(images)
        self._fit(as_uint8_images(images), y)
        self.is_fitted_ = True
        return self

    def transform(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features of ``images`` as a float32 array ``(len(images), n_features)``."""
        check_is_fitted(self, "is_fitted_")
        _check_images(images)
        out = self._transform_batch(as_uint8_images(images)) if len(images) else self._empty_features()
        out = np.ascontiguousarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(images):
            raise RuntimeError(
                f"{type(self).__name__} returned features of shape {out.shape} for {len(images)} images"
            )
        # Non-finite values are returned as they are, never replaced: the runner counts them and fails
        # the cell naming the extractor (a plugin's NaN is a defect to show, not a zero to hide).
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags

    @property
    def weights_label(self) -> str:
        """Where learned weights come from, for reports (``imagenet``, ``random``...); empty if none."""
        return ""

    def content_token(self) -> str | None:
        """Identity of the content of files the parameters point at (e.g. a weights file), or None.

        It enters the feature-cache key and the result cells' identity, so that replacing
        such a file in place invalidates features and results computed from the old one.
        """
        return None

    def report_info(self) -> dict:
        """Extra numbers for the report, read after ``fit`` (e.g. ``n_params``, ``gflops_per_image``)."""
        return {}

    def validate(self) -> None:
        """Check the parameters without touching data; raises ``InvalidParameterError`` or ``ConfigError``."""
        self._validate_params()
        self._check_params()

    # -- for subclasses ---------------------------------------------------------
    def _check_params(self) -> None:
        """Checks across parameters, beyond ``_parameter_constraints``."""

    def _fit(self, images: Sequence[np.ndarray], y: Any) -> None:
        """Learn from training images; stateless extractors need not override."""

    def _transform_one(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _transform_one or _transform_batch")

    def _transform_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        first = None
        out = None
        for i in range(len(images)):
            v = np.asarray(self._transform_one(images[i]), dtype=np.float32).ravel()
            if out is None:
                first = v
                out = np.empty((len(images), v.size), dtype=np.float32)
            elif v.size != first.size:
                raise RuntimeError(
                    f"{type(self).__name__} gave {v.size} features for image {i} but {first.size} for image 0"
                )
            out[i] = v
        if out is None:
            return self._empty_features()
        return out

    def _n_features(self) -> int:
        """Length of the feature vector; by default measured on one blank image.

        Used to give an empty input the shape ``(0, d)``. The blank image has the
        spec's ``input_size`` (else 32x32) and its colour; override when the
        dimension is known from the parameters.
        """
        h, w = self.spec.input_size or (32, 32)
        blank = np.zeros((h, w, 3) if self.spec.color == "rgb" else (h, w), dtype=np.uint8)
        return int(np.asarray(self._transform_batch([blank])).reshape(1, -1).shape[1])

    def _empty_features(self) -> np.ndarray:
        """Features of no image: ``(0, d)`` float32."""
        known = getattr(self, "n_features_out_", None)
        d = int(known) if isinstance(known, (int, np.integer)) else self._n_features()
        return np.empty((0, d), dtype=np.float32)

    @property
    def label(self) -> str:
        """Name plus the parameters that differ from their defaults, e.g. ``hog(cell_size=4)``."""
        from featbench.registry import EXTRACTORS

        name = next((n for n, c in EXTRACTORS._entries.items() if c is type(self)), type(self).__name__)
        defaults = type(self)().get_params()
        diff = {k: v for k, v in self.get_params().items() if defaults.get(k) != v}
        return name + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(diff.items())) + ")" if diff else "")


def _check_images(images: Any) -> None:
    if not hasattr(images, "__len__") or not hasattr(images, "__getitem__"):
        raise TypeError(f"images must be a sequence of arrays (an ImageSet, list or array); got {type(images)}")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)``: area interpolation when shrinking (anti-aliased), linear when growing."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=interp)
