"""The extractor contract: a scikit-learn transformer from images to ``(n, d)`` float32."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

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

    ``transform`` accepts any sequence of uint8 images (an
    :class:`~featbench.datasets.ImageSet`, a list of arrays, or an array
    ``(n, h, w[, 3])``) and returns a C-contiguous float32 array ``(n, d)``.
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
        self._fit(images, y)
        self.is_fitted_ = True
        return self

    def transform(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features of ``images`` as a float32 array ``(len(images), n_features)``."""
        check_is_fitted(self, "is_fitted_")
        _check_images(images)
        out = self._transform_batch(images)
        out = np.ascontiguousarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(images):
            raise RuntimeError(
                f"{type(self).__name__} returned features of shape {out.shape} for {len(images)} images"
            )
        if not np.isfinite(out).all():
            np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
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
            return np.empty((0, 0), dtype=np.float32)
        return out

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


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray ``HxW`` from gray or RGB(A) input."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    raise ValueError(f"expected an image HxW or HxWx3, got shape {image.shape}")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``HxWx3`` from gray or RGB(A) input."""
    image = np.asarray(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    raise ValueError(f"expected an image HxW or HxWx3, got shape {image.shape}")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)``: area interpolation when shrinking (anti-aliased), linear when growing."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=interp)
