"""Decoding image files to ``uint8`` arrays: ``HxW`` gray or ``HxWx3`` RGB.

Pillow decodes first (it knows every mode and applies EXIF orientation);
OpenCV (``cv2.imdecode`` on the file's bytes, so non-ASCII paths work) is the
fallback for files Pillow cannot read. The conversion rules are the same for
both, see :func:`decode_image`.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from featbench.errors import DatasetError
from featbench.images import as_uint8_image

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "probe_image", "file_sha256"]

#: File extensions the folder loader reads by default (lower case, no dot).
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp")

_EXIF_ORIENTATION = 0x0112


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to ``uint8``: ``HxW`` for gray files, ``HxWx3`` RGB otherwise.

    Rules:

    - 1-bit, 8-bit and 16-bit gray files give ``HxW``; colour and palette files give
      ``HxWx3`` in RGB order (CMYK, YCbCr, ... are converted to RGB).
    - An alpha channel (RGBA, gray+alpha, palette or gray/RGB with a transparent
      colour) is composited onto a **white** background and then dropped:
      gray+alpha gives ``HxW``, the others ``HxWx3``.
    - 16-bit samples keep their high byte (``v >> 8``, as Pillow does for 16-bit
      colour PNGs); 32-bit integer samples are clipped to 0..65535 first; floating
      point samples must be finite and in 0..1 and are scaled by 255 (a float file
      with NaN or values outside 0..1 is refused).
    - These sample and alpha rules are :func:`featbench.images.as_uint8_image`, which
      every extractor also applies to the arrays it is given.
    - EXIF orientation is applied (the image is returned as a photo viewer shows it).
    - Multi-frame files (TIFF pages, animated WebP) give their first frame.

    Parameters
    ----------
    path : str or path-like
        The image file.

    Returns
    -------
    ndarray of uint8, shape (H, W) or (H, W, 3)

    Raises
    ------
    DatasetError
        If the file does not exist or neither Pillow nor OpenCV can decode it.
    """
    path = os.fspath(path)
    try:
        return _decode_pil(path)
    except FileNotFoundError as exc:
        raise DatasetError(f"image file '{path}' does not exist") from exc
    except Exception as pil_exc:  # Pillow cannot read it: try OpenCV before giving up
        try:
            arr = _decode_cv2(path)
        except Exception:
            arr = None
        if arr is None:
            raise DatasetError(
                f"cannot decode image file '{path}' ({_reason(pil_exc)}); expected a readable "
                f"{'/'.join('.' + e for e in IMAGE_EXTENSIONS)} image"
            ) from pil_exc
        return arr


def probe_image(path: str | os.PathLike[str]) -> str | None:
    """Check that ``path`` decodes: ``None`` if so, else the reason it does not.

    The file is decoded in full with :func:`decode_image` (the header alone does
    not show a truncated or corrupt file), so a file that passes this check is one
    that every later :func:`decode_image` call reads.

    Parameters
    ----------
    path : str or path-like
        The image file.

    Returns
    -------
    str or None
        None for a readable image, else a short reason (without the path).
    """
    path = os.fspath(path)
    try:
        arr = decode_image(path)
    except DatasetError as exc:
        cause = exc.__cause__
        if isinstance(cause, FileNotFoundError):
            return "file does not exist"
        return f"not a readable image ({_reason(cause) if cause is not None else exc})"
    if arr.size == 0:
        return f"image has zero size ({arr.shape[1] if arr.ndim > 1 else 0}x{arr.shape[0]})"
    return None


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """SHA-256 digest (raw bytes) of the file's content; used as an image's fingerprint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


# -- internals -----------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode_pil(path: str) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.getexif().get(_EXIF_ORIENTATION, 1) in range(2, 9):
            rotated = ImageOps.exif_transpose(im)
            return _pil_to_uint8(rotated)
        im.load()
        return _pil_to_uint8(im)


def _pil_to_uint8(im) -> np.ndarray:
    mode = im.mode
    transparent = "transparency" in im.info
    if mode == "L" and not transparent:
        return np.array(im)
    if mode == "1":
        return np.array(im.convert("L"))
    if mode in ("LA", "La") or (mode in ("L", "1") and transparent):
        return as_uint8_image(np.asarray(im.convert("LA")))
    if mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and transparent):
        return as_uint8_image(np.asarray(im.convert("RGBA")))
    if mode.startswith("I") or mode.startswith("F"):  # I;16, I;16B, I;16L, I, F, F;32...
        return as_uint8_image(np.asarray(im))
    if mode == "RGB":
        return np.array(im)
    return np.array(im.convert("RGB"))  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...


def _decode_cv2(path: str) -> np.ndarray | None:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        return None
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        return None
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # BGR(A) -> RGB(A)
    return as_uint8_image(arr)
