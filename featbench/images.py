"""One rule for turning image arrays into featbench images: ``uint8`` ``HxW`` gray or ``HxWx3`` RGB.

The file decoder (:func:`featbench.datasets.decode_image`) applies :func:`as_uint8_image`
to the samples it decodes, and every extractor applies it to each image it is given,
so an array and the same picture read from a file give the same features.
This module comes before both stages in the data flow and imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from featbench.errors import ImageError

__all__ = ["ACCEPTED_IMAGES", "as_uint8_image", "as_uint8_images", "to_gray", "to_rgb"]

#: What :func:`as_uint8_image` accepts, as its error messages say it.
ACCEPTED_IMAGES = (
    "accepted: uint8 (as is), bool (0/255), integer types (16-bit range, high byte kept), "
    "float in [0, 1] (scaled by 255); shapes HxW, HxWx1 (gray), HxWx2 (gray+alpha), "
    "HxWx3 (RGB), HxWx4 (RGBA; alpha composited onto white)"
)


def as_uint8_image(image: Any, *, what: str = "image") -> np.ndarray:
    """An image as ``uint8``: ``HxW`` gray or ``HxWx3`` RGB (the file loader's rules).

    ``uint8`` ``HxW`` and ``HxWx3`` arrays are returned as they are (the same object,
    no copy). Otherwise:

    - samples: ``bool`` gives 0 / 255; integer types are clipped to 0..65535 and keep
      their high byte (``v >> 8``, as for 16-bit files); floats must be finite and in
      [0, 1] and are scaled by 255 and rounded;
    - channels: ``HxWx1`` gives ``HxW``; an alpha channel (``HxWx2`` gray+alpha,
      ``HxWx4`` RGBA) is composited onto a white background and dropped, after the
      samples are converted to ``uint8``.

    Parameters
    ----------
    image : array-like
        The image.
    what : str, default "image"
        How to name the image in an error message, e.g. ``"image 3"``.

    Returns
    -------
    ndarray of uint8, shape (H, W) or (H, W, 3)

    Raises
    ------
    ImageError
        For any other sample type (complex, object, strings, ...), a float image with
        NaN, infinite values or values outside [0, 1], a shape other than those above,
        or an image with no pixels. The message names the dtype or shape.
    """
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    if arr.dtype == np.uint8 and _plain_shape(arr.shape):
        return arr
    _check_shape(arr, what)
    out = _samples_to_uint8(arr, what)
    if out.ndim == 3:
        channels = out.shape[2]
        if channels == 1:
            out = out[:, :, 0]
        elif channels in (2, 4):
            out = _composite_white(out)
            if channels == 2:
                out = out[:, :, 0]
    return np.ascontiguousarray(out)


def as_uint8_images(images: Any) -> Any:
    """A sequence of images read through :func:`as_uint8_image`, lazily.

    A ``uint8`` array ``(N, H, W)`` or ``(N, H, W, 3)`` with images of non-zero size,
    and an :class:`~featbench.datasets.ImageSet` of such an array, are returned as
    they are (the dtype and shape are checked once, nothing is copied); any other
    sequence is wrapped so that item ``i`` is ``as_uint8_image(images[i])``.
    """
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8 and images.ndim in (3, 4) and _plain_shape(images.shape[1:]):
            return images
        if images.ndim < 3 and images.dtype != object and len(images):
            raise ImageError(
                f"images of shape {images.shape}: expected a sequence of images, e.g. an array "
                f"(N, H, W) or (N, H, W, 3), an ImageSet or a list of arrays; {ACCEPTED_IMAGES}"
            )
    else:
        uniform = getattr(images, "_uniform_uint8", None)  # ImageSets held in one uint8 array say so
        if callable(uniform) and uniform():
            return images
    return _Normalised(images)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray ``HxW`` from gray or RGB(A) input (OpenCV's ITU-R BT.601 weights)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    raise ImageError(f"expected an image HxW or HxWx3, got shape {image.shape}")


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
    raise ImageError(f"expected an image HxW or HxWx3, got shape {image.shape}")


# -- internals -----------------------------------------------------------------


class _Normalised(Sequence):
    """``images[i]`` through :func:`as_uint8_image`; slices stay lazy."""

    def __init__(self, images: Any) -> None:
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return as_uint8_image(self._images[i], what=f"image {i}")


def _plain_shape(shape: tuple[int, ...]) -> bool:
    """True for ``HxW`` or ``HxWx3`` with no zero side."""
    return (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) and shape[0] > 0 and shape[1] > 0


def _describe(arr: np.ndarray, what: str) -> str:
    return f"{what} of dtype {arr.dtype} and shape {arr.shape}"


def _check_shape(arr: np.ndarray, what: str) -> None:
    good = arr.ndim == 2 or (arr.ndim == 3 and 1 <= arr.shape[2] <= 4)
    if not good:
        raise ImageError(f"{_describe(arr, what)} is not an image; {ACCEPTED_IMAGES}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{_describe(arr, what)} has no pixels; {ACCEPTED_IMAGES}")


def _samples_to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        return (np.clip(arr, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ImageError(f"{_describe(arr, what)} holds NaN or infinite values; {ACCEPTED_IMAGES}")
        scaled = np.round(arr.astype(np.float64) * 255.0)
        low, high = float(scaled.min()), float(scaled.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{_describe(arr, what)} has values {float(arr.min()):g}..{float(arr.max()):g} outside "
                f"[0, 1] (for 0..255 values pass uint8: np.uint8(image)); {ACCEPTED_IMAGES}"
            )
        return scaled.astype(np.uint8)
    raise ImageError(f"{_describe(arr, what)}: unsupported sample type {arr.dtype}; {ACCEPTED_IMAGES}")


def _composite_white(arr: np.ndarray) -> np.ndarray:
    """``(..., C+1)`` uint8 colour + alpha composited onto white: ``(..., C)`` uint8."""
    colour = arr[..., :-1].astype(np.uint32)
    alpha = arr[..., -1:].astype(np.uint32)
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)
