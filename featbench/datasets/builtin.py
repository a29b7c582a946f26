"""Built-in datasets: ``digits``, ``faces``, ``textures`` (bundled with scikit-learn /
scikit-image) and ``opencv-digits`` (OpenCV's digits sheet).

Every loader is a function registered with :func:`~featbench.registry.register_dataset`,
takes keyword parameters only (all loaders accept ``limit_per_class`` and ``seed``)
and returns an :class:`~featbench.datasets.ImageSet`. The first line of a loader's
docstring is what ``featbench list datasets`` shows. The other loader families have
their own modules (``folder``, ``idx``, ``keras``); importing this module (as the
registry does) registers them all, and their names stay importable from here.

Local files always come first; nothing is downloaded unless a loader says so
(only ``keras`` does, as a last resort, through Keras itself).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featbench.datasets.base import ArrayImageSet, ImageSet
from featbench.datasets.common import DIGIT_NAMES, apply_limit, check_common, int_param
from featbench.datasets.folder import load_folder
from featbench.datasets.idx import load_idx
from featbench.datasets.io import decode_image
from featbench.datasets.keras import load_keras
from featbench.datasets.loading import load_dataset
from featbench.datasets.paths import as_path_str, cache_dir, featbench_data, locate, looked_also
from featbench.errors import ConfigError, DatasetError
from featbench.images import to_gray
from featbench.registry import register_dataset

__all__ = [
    "load_dataset",
    "load_digits",
    "load_faces",
    "load_textures",
    "load_folder",
    "load_idx",
    "load_opencv_digits",
    "load_keras",
    "cache_dir",
]


# -- digits, faces, textures (bundled with scikit-learn / scikit-image) ------------------------


@register_dataset("digits")
def load_digits(*, limit_per_class: int | None = None, seed: int = 0) -> ImageSet:
    """Handwritten digits 0-9, 1797 gray images of 8x8 (scikit-learn, bundled).

    Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``).

    Parameters
    ----------
    limit_per_class : int or None, default None
        Keep at most this many images per class (chosen with ``seed``).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"digits"``, classes ``"0"`` .. ``"9"``.

    References
    ----------
    Source: ``sklearn.datasets.load_digits`` (UCI Optical Recognition of Handwritten
    Digits, test part; Alpaydin & Kaynak, 1998).
    """
    check_common(limit_per_class, seed)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.round(np.asarray(bunch.images, dtype=np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    ds = ArrayImageSet("digits", images, bunch.target.astype(np.int64), DIGIT_NAMES)
    return apply_limit(ds, limit_per_class, seed)


@register_dataset("faces")
def load_faces(*, limit_per_class: int | None = None, seed: int = 0) -> ImageSet:
    """Faces vs non-faces, 200 gray images of 25x25 from LFW (scikit-image, bundled).

    ``skimage.data.lfw_subset()`` holds 100 faces followed by 100 non-face
    background patches; here label 1 is ``"face"`` and label 0 ``"non-face"``.
    Values in 0..1 are scaled to 0..255.

    Parameters
    ----------
    limit_per_class : int or None, default None
        Keep at most this many images per class (chosen with ``seed``).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"faces"``, classes ``["non-face", "face"]``.

    References
    ----------
    Source: ``skimage.data.lfw_subset``; Huang, Mattar, Lee & Learned-Miller,
    "Learning to align from scratch", NIPS 2012; http://vis-www.cs.umass.edu/lfw/
    """
    check_common(limit_per_class, seed)
    from skimage import data as skdata

    raw = np.asarray(skdata.lfw_subset())
    if raw.dtype == np.uint8:
        images = raw
    else:
        images = np.round(np.clip(raw.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    n_faces = len(images) // 2  # the first half are faces (skimage docs)
    labels = np.zeros(len(images), dtype=np.int64)
    labels[:n_faces] = 1
    ds = ArrayImageSet("faces", np.ascontiguousarray(images), labels, ["non-face", "face"])
    return apply_limit(ds, limit_per_class, seed)


_TEXTURES = ("brick", "grass", "gravel")


@register_dataset("textures")
def load_textures(
    *,
    patch_size: int = 32,
    stride: int | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Texture patches (brick, grass, gravel) cut from scikit-image's bundled 512x512 photos.

    Square gray patches are cut on a regular grid, row by row, from
    ``skimage.data.brick()``, ``grass()`` and ``gravel()``. With the defaults
    (32, stride 32) each class has 16 x 16 = 256 patches.

    Parameters
    ----------
    patch_size : int, default 32
        Side of the square patches, 8..512.
    stride : int or None, default None
        Step between patches, 1..512; None means ``patch_size`` (no overlap).
    limit_per_class : int or None, default None
        Keep at most this many patches per class (chosen with ``seed``).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"textures"``, classes ``["brick", "grass", "gravel"]``.

    References
    ----------
    Source: ``skimage.data.brick``, ``skimage.data.grass``, ``skimage.data.gravel``
    (public-domain photos bundled with scikit-image).
    """
    check_common(limit_per_class, seed)
    patch_size = int_param("patch_size", patch_size, 8, 512)
    stride = patch_size if stride is None else int_param("stride", stride, 1, 512)
    from skimage import data as skdata

    patches, labels = [], []
    for label, texture in enumerate(_TEXTURES):
        img = np.asarray(getattr(skdata, texture)())
        img = to_gray(img)  # the bundled files are gray: a no-op for them
        h, w = img.shape
        if patch_size > min(h, w):
            raise ConfigError(f"patch_size {patch_size} is larger than the {texture} image ({h}x{w})")
        for y in range(0, h - patch_size + 1, stride):
            for x in range(0, w - patch_size + 1, stride):
                patches.append(img[y : y + patch_size, x : x + patch_size])
                labels.append(label)
    images = np.ascontiguousarray(np.stack(patches).astype(np.uint8))
    ds = ArrayImageSet("textures", images, labels, list(_TEXTURES))
    return apply_limit(ds, limit_per_class, seed)


# -- opencv-digits ---------------------------------------------------------------------------


def _opencv_digits_file(path: str | None, origin: str) -> Path:
    if path is None:
        data = featbench_data()
        if data is None:
            raise DatasetError(
                f"opencv-digits needs path=<digits.png> or FEATBENCH_DATA (then "
                f"$FEATBENCH_DATA/opencv-digits/digits.png is used); neither is set; {origin}"
            )
        sheet = Path(os.path.abspath(data / "opencv-digits" / "digits.png"))
        tried = [sheet]
    else:
        sheet, tried = locate(as_path_str(path, "path"), "opencv-digits path")
    if not sheet.is_file():
        raise DatasetError(
            f"opencv-digits file not found: looked for '{sheet}'{looked_also(tried)}; {origin}"
        )
    return sheet


@register_dataset("opencv-digits")
def load_opencv_digits(
    *, path: str | None = None, limit_per_class: int | None = None, seed: int = 0
) -> ImageSet:
    """OpenCV's digits.png: 5000 handwritten digits of 20x20, with the OpenCV tutorial's split.

    The 2000x1000 sheet holds 50 rows of 100 digits; each block of 5 rows is one
    digit (0..9, 500 each). Images are numbered row by row. ``official_split``
    follows OpenCV's tutorial "OCR of Hand-written Data using kNN": in each row the
    first 50 digits are train and the last 50 test (2500 / 2500).

    Parameters
    ----------
    path : str or None, default None
        The ``digits.png`` file; None means ``$FEATBENCH_DATA/opencv-digits/digits.png``.
    limit_per_class : int or None, default None
        Keep at most this many images per class, in train and test separately.
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"opencv-digits"``, classes ``"0"`` .. ``"9"``.

    References
    ----------
    Source: ``samples/data/digits.png`` in https://github.com/opencv/opencv;
    tutorial: https://docs.opencv.org/4.x/d8/d4b/tutorial_py_knn_opencv.html
    """
    check_common(limit_per_class, seed)
    origin = "it is OpenCV's samples/data/digits.png (2000x1000 gray)"
    sheet = _opencv_digits_file(path, origin)
    img = to_gray(decode_image(sheet))
    if img.shape != (1000, 2000):
        raise DatasetError(
            f"opencv-digits file '{sheet}' is {img.shape[1]}x{img.shape[0]}, expected 2000x1000 "
            f"(50 rows of 100 digits of 20x20); {origin}"
        )
    cells = img.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3)  # (row, col, 20, 20)
    images = np.ascontiguousarray(cells.reshape(5000, 20, 20))
    rows, cols = np.divmod(np.arange(5000), 100)
    labels = rows // 5
    split = (np.flatnonzero(cols < 50), np.flatnonzero(cols >= 50))
    ds = ArrayImageSet("opencv-digits", images, labels, DIGIT_NAMES, official_split=split)
    return apply_limit(ds, limit_per_class, seed)
