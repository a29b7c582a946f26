"""Built-in dataset loaders and :func:`load_dataset`.

Every loader is a function registered with :func:`~featbench.registry.register_dataset`,
takes keyword parameters only (all loaders accept ``limit_per_class`` and ``seed``)
and returns an :class:`~featbench.datasets.ImageSet`. The first line of a loader's
docstring is what ``featbench list datasets`` shows.

Local files always come first; nothing is downloaded unless a loader says so
(only ``keras`` does, as a last resort, through Keras itself).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import inspect
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featbench.datasets.base import ArrayImageSet, ImageSet, LazyImageSet, Skipped
from featbench.datasets.base import limit_per_class as _select_per_class
from featbench.datasets.io import IMAGE_EXTENSIONS, decode_image, file_sha256, probe_image
from featbench.errors import ConfigError, DatasetError
from featbench.registry import DATASETS, register_dataset

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

DIGIT_NAMES = [str(d) for d in range(10)]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


# =============================================================================
# load_dataset
# =============================================================================


def load_dataset(name: str, /, **params: Any) -> ImageSet:
    """Load the dataset registered as ``name`` with keyword ``params``.

    Parameters
    ----------
    name : str
        A registered dataset name (``featbench list datasets``), e.g. ``"digits"``.
    **params
        The loader's keyword parameters, e.g. ``limit_per_class=50``.

    Returns
    -------
    ImageSet

    Raises
    ------
    UnknownNameError
        If no dataset is registered as ``name`` (with close matches).
    ConfigError
        If a parameter name is not accepted by the loader (the message lists the
        accepted ones) or a required parameter is missing.
    DatasetError
        If the data cannot be found or read.
    """
    loader = DATASETS.get(name)
    try:
        sig = inspect.signature(loader)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        sig = None
    if sig is not None:
        accepted = [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        wrong = [k for k in params if k not in accepted]
        if wrong and not takes_any:
            raise ConfigError(
                f"unknown parameter {', '.join(map(repr, wrong))} for dataset {name!r}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )
        missing = [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in params
        ]
        if missing:
            raise ConfigError(
                f"dataset {name!r} needs parameter {', '.join(map(repr, missing))}; "
                f"accepted: {', '.join(accepted)}"
            )
    result = loader(**params)
    if not isinstance(result, ImageSet):
        raise DatasetError(
            f"dataset loader {name!r} returned {type(result).__name__}, expected an ImageSet"
        )
    return result


# =============================================================================
# helpers shared by the loaders
# =============================================================================


def _check_common(limit: Any, seed: Any) -> None:
    not_int = isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
    if limit is not None and (not_int or limit < 1):
        raise ConfigError(f"limit_per_class must be a positive integer or None, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


def _int_param(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _apply_limit(ds: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """Keep at most ``limit`` images per class (per part of the official split)."""
    if limit is None:
        return ds
    labels = ds.labels
    split = ds.official_split
    if split is None:
        return ds.subset(_select_per_class(labels, limit, seed))
    train, test = (np.asarray(p, dtype=np.int64) for p in split)
    keep_train = np.sort(train[_select_per_class(labels[train], limit, seed)])
    keep_test = np.sort(test[_select_per_class(labels[test], limit, seed)])
    keep = np.sort(np.concatenate([keep_train, keep_test]))
    out = ds.subset(keep)
    out.official_split = (np.searchsorted(keep, keep_train), np.searchsorted(keep, keep_test))
    return out


_ENV_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(value: str, what: str) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` expansion; an unset variable is an error naming it."""
    for braced, plain in _ENV_REF.findall(value):
        var = braced or plain
        if var not in os.environ:
            raise DatasetError(
                f"{what} '{value}' uses the environment variable ${var}, which is not set; "
                f"set {var} or give the full path"
            )
    return os.path.expanduser(os.path.expandvars(value))


def _as_path_str(value: Any, key: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty path string, got {value!r}")
    return value


def _featbench_data() -> Path | None:
    value = os.environ.get("FEATBENCH_DATA")
    if not value:
        return None
    return Path(_expand(value, "FEATBENCH_DATA"))


def _locate(value: str, what: str) -> tuple[Path, list[Path]]:
    """Resolve a user path: as given (relative to the current directory), else under
    ``$FEATBENCH_DATA``. Returns the path to use and every place looked at."""
    path = Path(_expand(value, what))
    tried = [Path(os.path.abspath(path))]
    if path.exists() or path.is_absolute():
        return tried[0], tried
    data = _featbench_data()
    if data is not None:
        alt = Path(os.path.abspath(data / path))
        tried.append(alt)
        if alt.exists():
            return alt, tried
    return tried[0], tried


def _also(tried: list[Path]) -> str:
    return "" if len(tried) < 2 else " (also looked in " + ", ".join(f"'{p}'" for p in tried[1:]) + ")"


def cache_dir() -> Path:
    """Folder for featbench's derived files: ``$FEATBENCH_CACHE`` or ``~/.cache/featbench``."""
    value = os.environ.get("FEATBENCH_CACHE")
    if value:
        return Path(_expand(value, "FEATBENCH_CACHE"))
    return Path.home() / ".cache" / "featbench"


def _sha256_hex(path: Path) -> str:
    return file_sha256(path).hex()


def _write_atomic(target: Path, write: Callable[[Any], None]) -> None:
    """Write ``target`` through a temporary file in the same folder and ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# Part of a memory-mapped set: an in-memory array, or (file, byte offset, shape) of
# raw C-ordered uint8 data opened with np.memmap on first use.
_Part = np.ndarray | tuple[str, int, tuple[int, ...]]


def _npy_part(path: Path) -> tuple[str, int, tuple[int, ...]] | None:
    """The (file, offset, shape) of a uint8 ``.npy`` file, or None if it is not one."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return None
    if not isinstance(arr, np.memmap) or arr.dtype != np.uint8 or not arr.flags.c_contiguous:
        return None
    part = (str(path), int(arr.offset), tuple(int(s) for s in arr.shape))
    del arr
    return part


class _MappedImageSet(ImageSet):
    """Images stored in one or more uint8 arrays of equal image shape, concatenated.

    On-disk parts are memory-mapped on first access (never read whole), and the
    maps are dropped when pickled, so parallel workers reopen the files instead of
    receiving copies. The fingerprint equals that of an :class:`ArrayImageSet` with
    the same content.
    """

    def __init__(self, name: str, parts: Sequence[_Part], labels, class_names, **kw) -> None:
        super().__init__(name, labels, class_names, **kw)
        self._parts = list(parts)
        shapes = [p.shape if isinstance(p, np.ndarray) else p[2] for p in self._parts]
        image_shapes = {tuple(int(s) for s in shape[1:]) for shape in shapes}
        if len(image_shapes) != 1:
            raise DatasetError(f"dataset {name!r} mixes image shapes {sorted(image_shapes)}")
        self._image_shape = image_shapes.pop()
        self._starts = np.concatenate([[0], np.cumsum([shape[0] for shape in shapes])]).astype(np.int64)
        if self._starts[-1] != len(self._all_labels):
            raise DatasetError(
                f"dataset {name!r} has {self._starts[-1]} images but {len(self._all_labels)} labels"
            )
        self._arrays: list[np.ndarray] | None = None

    def _open(self) -> list[np.ndarray]:
        if self._arrays is None:
            self._arrays = [
                p if isinstance(p, np.ndarray)
                else np.memmap(p[0], dtype=np.uint8, mode="r", offset=p[1], shape=p[2])
                for p in self._parts
            ]
        return self._arrays

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def _load(self, storage_pos: int) -> np.ndarray:
        arrays = self._open()
        k = int(np.searchsorted(self._starts, storage_pos, side="right")) - 1
        return np.array(arrays[k][storage_pos - self._starts[k]])

    def _content_digest(self, h: Any) -> None:
        h.update(str(self._image_shape).encode())
        arrays = self._open()
        idx = self._index
        for start in range(0, len(idx), 4096):
            chunk = idx[start : start + 4096]
            which = np.searchsorted(self._starts, chunk, side="right") - 1
            out = np.empty((len(chunk), *self._image_shape), dtype=np.uint8)
            for k in np.unique(which):
                sel = which == k
                out[sel] = arrays[k][chunk[sel] - self._starts[k]]
            h.update(out.tobytes())


# =============================================================================
# digits, faces, textures (bundled with scikit-learn / scikit-image)
# =============================================================================


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
    _check_common(limit_per_class, seed)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.round(np.asarray(bunch.images, dtype=np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    ds = ArrayImageSet("digits", images, bunch.target.astype(np.int64), DIGIT_NAMES)
    return _apply_limit(ds, limit_per_class, seed)


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
    _check_common(limit_per_class, seed)
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
    return _apply_limit(ds, limit_per_class, seed)


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
    _check_common(limit_per_class, seed)
    patch_size = _int_param("patch_size", patch_size, 8, 512)
    stride = patch_size if stride is None else _int_param("stride", stride, 1, 512)
    from skimage import data as skdata

    patches, labels = [], []
    for label, texture in enumerate(_TEXTURES):
        img = np.asarray(getattr(skdata, texture)())
        if img.ndim == 3:  # not expected (bundled files are gray), but be safe
            img = np.round(img[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
        h, w = img.shape
        if patch_size > min(h, w):
            raise ConfigError(f"patch_size {patch_size} is larger than the {texture} image ({h}x{w})")
        for y in range(0, h - patch_size + 1, stride):
            for x in range(0, w - patch_size + 1, stride):
                patches.append(img[y : y + patch_size, x : x + patch_size])
                labels.append(label)
    images = np.ascontiguousarray(np.stack(patches).astype(np.uint8))
    ds = ArrayImageSet("textures", images, labels, list(_TEXTURES))
    return _apply_limit(ds, limit_per_class, seed)


# =============================================================================
# folder
# =============================================================================


def _normalise_extensions(extensions: Any) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = re.split(r"[,\s]+", extensions)
    try:
        exts = tuple(str(e).lower().lstrip(".") for e in extensions if str(e).strip(". "))
    except TypeError:
        exts = ()
    if not exts or not all(isinstance(e, str) for e in extensions):
        raise ConfigError(
            f"extensions must be a list of file extensions such as ['jpg', 'png'], got {extensions!r}"
        )
    return exts


def _images_under(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden files and folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in filenames:
            if fname.startswith("."):
                continue
            if Path(fname).suffix.lower().lstrip(".") in exts:
                found.append(Path(dirpath) / fname)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


@register_dataset("folder")
def load_folder(
    *,
    root: str,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Your own images: a folder with one sub-folder per class (decoded lazily).

    Each immediate sub-folder of ``root`` is a class (sorted by name); the images
    anywhere inside it (sorted by path; hidden files and folders and files at the
    root itself are ignored) are its examples. Images keep their own mode: gray
    files give ``HxW``, colour and palette files ``HxWx3`` RGB; alpha is
    composited onto white; 16-bit files keep their high byte (see
    :func:`featbench.datasets.decode_image`). Every selected file's header is
    checked at load time; files that cannot be read are left out and listed in
    ``skipped``. The fingerprint hashes file contents, not paths.

    Parameters
    ----------
    root : str
        The folder. ``~`` and ``$VARS`` are expanded; a relative path is looked for
        in the current directory, then under ``$FEATBENCH_DATA``.
    extensions : list of str, default jpg jpeg png bmp tif tiff webp
        File extensions to read (case-insensitive, with or without the dot).
    limit_per_class : int or None, default None
        Keep at most this many images per class (chosen with ``seed`` before the
        files are checked; unreadable ones are then left out).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    LazyImageSet
        Named ``"folder:<folder name>"``.

    References
    ----------
    Source: the same layout as ``torchvision.datasets.ImageFolder`` and
    ``keras.utils.image_dataset_from_directory``.
    """
    _check_common(limit_per_class, seed)
    root = _as_path_str(root, "root")
    exts = _normalise_extensions(extensions)
    wanted = "/".join("." + e for e in exts)
    layout = f"expected a folder with one sub-folder per class containing {wanted} images"
    path, tried = _locate(root, "dataset folder")
    if not path.exists():
        raise DatasetError(f"dataset folder '{path}' does not exist{_also(tried)}; {layout}")
    if not path.is_dir():
        raise DatasetError(f"dataset folder '{path}' is not a folder; {layout}")

    class_dirs = sorted(
        (p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    if not class_dirs:
        loose = [p for p in path.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in exts]
        hint = f" (it holds {len(loose)} images directly: move them into class sub-folders)" if loose else ""
        raise DatasetError(f"dataset folder '{path}' has no class sub-folders{hint}; {layout}")

    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = _images_under(class_dir, exts)
        if not found:
            raise DatasetError(
                f"class folder '{class_dir}' holds no {wanted} images; "
                "remove it or add images (every sub-folder of the dataset folder is a class)"
            )
        files.extend(found)
        labels.extend([label] * len(found))
    labels_arr = np.asarray(labels, dtype=np.int64)

    positions = _select_per_class(labels_arr, limit_per_class, seed)
    sources: list[str] = []
    kept_labels: list[int] = []
    skipped: list[Skipped] = []
    for pos in positions:
        src = str(files[pos])
        reason = probe_image(src)
        if reason is None:
            sources.append(src)
            kept_labels.append(int(labels_arr[pos]))
        else:
            skipped.append(Skipped(source=src, reason=reason))
    if not sources:
        raise DatasetError(
            f"none of the {len(positions)} image files in dataset folder '{path}' can be read "
            f"(first: '{skipped[0].source}': {skipped[0].reason})"
        )
    class_names = [d.name for d in class_dirs]
    empty = sorted(set(range(len(class_names))) - set(kept_labels))
    if empty:
        warnings.warn(
            f"dataset folder '{path}': no readable image left in class "
            f"{', '.join(repr(class_names[c]) for c in empty)}",
            stacklevel=2,
        )
    return LazyImageSet(
        f"folder:{path.name}",
        sources,
        kept_labels,
        class_names,
        load=decode_image,
        digest=file_sha256,
        skipped=skipped,
    )


# =============================================================================
# idx (MNIST format)
# =============================================================================

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


def _idx_candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # as in the original archive's member names
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in _idx_candidates(stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_idx(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _read_idx_header(f, path: Path, expected_magic: int) -> tuple[int, ...]:
    kind = "images" if expected_magic == _IDX_IMAGES_MAGIC else "labels"
    head = f.read(4)
    magic = int.from_bytes(head, "big") if len(head) == 4 else None
    if magic != expected_magic:
        raise DatasetError(
            f"'{path}' is not an MNIST-format IDX {kind} file: magic number {magic} "
            f"(expected {expected_magic}, i.e. unsigned bytes with {expected_magic & 0xFF} dimensions)"
        )
    ndim = expected_magic & 0xFF
    raw = f.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise DatasetError(f"IDX file '{path}' ends inside its header")
    return tuple(int(d) for d in np.frombuffer(raw, dtype=">u4"))


def _idx_labels(path: Path) -> np.ndarray:
    try:
        with _open_idx(path) as f:
            (count,) = _read_idx_header(f, path, _IDX_LABELS_MAGIC)
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file '{path}': {exc}") from exc
    if len(data) != count:
        raise DatasetError(f"IDX labels file '{path}' says {count} labels but holds {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


def _idx_images(path: Path) -> _Part:
    """Images of an IDX file as a memory-mappable part (decompressed into the cache)."""
    try:
        with _open_idx(path) as f:
            dims = _read_idx_header(f, path, _IDX_IMAGES_MAGIC)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file '{path}': {exc}") from exc
    count, rows, cols = dims
    n_bytes = count * rows * cols
    mismatch = f"IDX images file '{path}' says {count} images of {rows}x{cols} ({n_bytes} bytes of pixels)"
    if not _is_gzip(path):  # uncompressed: map the file itself
        held = path.stat().st_size - 16
        if held != n_bytes:
            raise DatasetError(f"{mismatch} but holds {held}")
        return (str(path), 16, dims)

    target = cache_dir() / "idx" / f"{_sha256_hex(path)}.npy"
    part = _npy_part(target) if target.is_file() else None
    if part is not None and part[2] == dims:
        return part

    def write(out) -> None:
        np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": dims})
        with gzip.open(path, "rb") as src:
            src.read(16)
            remaining = n_bytes
            while remaining:
                chunk = src.read(min(remaining, 1 << 22))
                if not chunk:
                    raise DatasetError(f"{mismatch} but holds only {n_bytes - remaining}")
                out.write(chunk)
                remaining -= len(chunk)
            if src.read(1):
                raise DatasetError(f"{mismatch} but holds more")

    try:
        _write_atomic(target, write)
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file '{path}': {exc}") from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not path.exists():
            raise DatasetError(f"IDX file '{path}' disappeared while reading") from exc
        warnings.warn(
            f"cannot write the decompressed copy of '{path}' to '{target}' ({exc}); holding it in memory "
            "instead (set FEATBENCH_CACHE to a writable folder to avoid this)",
            stacklevel=3,
        )
        with gzip.open(path, "rb") as src:
            src.read(16)
            data = src.read()
        if len(data) != n_bytes:
            raise DatasetError(f"{mismatch} but holds {len(data)}") from None
        return np.frombuffer(data, dtype=np.uint8).reshape(dims)
    part = _npy_part(target)
    if part is None or part[2] != dims:
        raise DatasetError(f"the decompressed copy '{target}' of '{path}' cannot be read back")
    return part


def _idx_default_root() -> str:
    data = os.environ.get("FEATBENCH_DATA")
    if not data:
        raise DatasetError(
            "idx dataset needs root=<folder with MNIST-format files>, or the FEATBENCH_DATA "
            "environment variable (then $FEATBENCH_DATA/mnist is used); neither is set"
        )
    return str(Path(_expand(data, "FEATBENCH_DATA")) / "mnist")


def _idx_parts_present(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    return {part: (_find_idx(folder, img), _find_idx(folder, lab)) for part, (img, lab) in _IDX_STEMS.items()}


@register_dataset("idx")
def load_idx(
    *,
    root: str | None = None,
    subset: str = "all",
    class_names: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """MNIST-format IDX files from a local folder (MNIST, Fashion-MNIST, ...), memory-mapped.

    Reads ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same
    names without ``.gz``). Gzipped image files are decompressed once into
    ``<cache>/idx/<sha256 of the .gz>.npy`` (cache: ``$FEATBENCH_CACHE`` or
    ``~/.cache/featbench``) and memory-mapped, so a 70,000-image set is never held
    in memory at once. With both parts, the set holds train then test and
    ``official_split`` is (train positions, test positions).

    Parameters
    ----------
    root : str or None, default None
        Folder holding the files; None means ``$FEATBENCH_DATA/mnist``. ``~`` and
        ``$VARS`` are expanded; a relative path is also looked for under
        ``$FEATBENCH_DATA``.
    subset : {"all", "train", "test"}, default "all"
        Which part to load. With "all" and only one part present, that part is
        loaded (with a warning) and there is no official split.
    class_names : list of str or None, default None
        Names of labels 0, 1, ...; None means ``"0"`` .. ``"9"`` (pass the
        Fashion-MNIST names for Fashion-MNIST).
    limit_per_class : int or None, default None
        Keep at most this many images per class, in the train and the test part
        separately (chosen with ``seed``).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"idx:<folder name>"``, gray 28x28 images for MNIST.

    References
    ----------
    Source: the IDX format of LeCun, Cortes & Burges, "The MNIST database of
    handwritten digits", http://yann.lecun.com/exdb/mnist/
    """
    _check_common(limit_per_class, seed)
    if subset not in ("all", "train", "test"):
        raise ConfigError(f"subset must be 'all', 'train' or 'test', got {subset!r}")
    names = DIGIT_NAMES if class_names is None else class_names
    if isinstance(names, str) or not all(isinstance(c, str) for c in names) or not names:
        raise ConfigError(f"class_names must be a list of strings, got {class_names!r}")
    names = list(names)

    value = _idx_default_root() if root is None else _as_path_str(root, "root")
    folder, tried = _locate(value, "idx folder")
    expected = (
        "expected MNIST-format files train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] "
        "and/or t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz]"
    )
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else f"does not exist{_also(tried)}"
        raise DatasetError(f"idx folder '{folder}' {what}; {expected}")

    present = _idx_parts_present(folder)
    complete = [p for p in ("train", "test") if all(present[p])]
    halves = [
        f"{p} {'labels' if present[p][1] else 'images'} without its {'images' if present[p][1] else 'labels'}"
        for p in ("train", "test")
        if any(present[p]) and not all(present[p])
    ]
    half_note = f" (found only {'; '.join(halves)})" if halves else ""
    if subset == "all":
        parts = complete
        if not parts:
            raise DatasetError(
                f"idx folder '{folder}' holds no complete image+label pair{half_note}; {expected}"
            )
        if len(parts) == 1:
            missing = "train" if parts[0] == "test" else "test"
            warnings.warn(
                f"idx folder '{folder}' has only the {parts[0]} part (no {missing} files{half_note}); "
                f"loading the {parts[0]} part alone, without an official split",
                stacklevel=2,
            )
    else:
        if subset not in complete:
            img, lab = _IDX_STEMS[subset]
            raise DatasetError(
                f"idx folder '{folder}' has no {subset} part{half_note}; expected {img}[.gz] and {lab}[.gz]"
            )
        parts = [subset]

    arrays: list[_Part] = []
    labels: list[np.ndarray] = []
    for part in parts:
        img_path, lab_path = present[part]
        assert img_path is not None and lab_path is not None
        lab = _idx_labels(lab_path)
        img = _idx_images(img_path)
        count = img.shape[0] if isinstance(img, np.ndarray) else img[2][0]
        if count != len(lab):
            raise DatasetError(
                f"IDX images file '{img_path}' has {count} images but '{lab_path}' has {len(lab)} labels"
            )
        if len(lab) and lab.max() >= len(names):
            raise DatasetError(
                f"IDX labels file '{lab_path}' has label {int(lab.max())} but only {len(names)} class names "
                f"are given ({', '.join(names)}); pass class_names with one name per label"
            )
        arrays.append(img)
        labels.append(lab)

    all_labels = np.concatenate(labels)
    split = None
    if len(parts) == 2:
        n_train = len(labels[0])
        split = (np.arange(n_train), np.arange(n_train, len(all_labels)))
    ds = _MappedImageSet(f"idx:{folder.name}", arrays, all_labels, names, official_split=split)
    return _apply_limit(ds, limit_per_class, seed)


# =============================================================================
# opencv-digits
# =============================================================================


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
    _check_common(limit_per_class, seed)
    origin = "it is OpenCV's samples/data/digits.png (2000x1000 gray)"
    if path is None:
        data = _featbench_data()
        if data is None:
            raise DatasetError(
                f"opencv-digits needs path=<digits.png> or FEATBENCH_DATA (then "
                f"$FEATBENCH_DATA/opencv-digits/digits.png is used); neither is set; {origin}"
            )
        sheet = Path(os.path.abspath(data / "opencv-digits" / "digits.png"))
        tried = [sheet]
    else:
        sheet, tried = _locate(_as_path_str(path, "path"), "opencv-digits path")
    if not sheet.is_file():
        raise DatasetError(
            f"opencv-digits file not found: looked for '{sheet}'{_also(tried)}; {origin}"
        )
    img = decode_image(sheet)
    if img.ndim == 3:
        img = np.round(img.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
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
    return _apply_limit(ds, limit_per_class, seed)


# =============================================================================
# keras
# =============================================================================

_KERAS_NAMES = ("cifar10", "mnist", "fashion_mnist")
_PICKLE_ALLOWED = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _keras_home_datasets() -> list[Path]:
    home = os.environ.get("KERAS_HOME")
    base = Path(_expand(home, "KERAS_HOME")) if home else Path.home() / ".keras"
    out = [base / "datasets"]
    if not home:
        out.append(Path(tempfile.gettempdir()) / ".keras" / "datasets")  # Keras' fallback if ~ is read-only
    return out


def _keras_places(name: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(complete IDX folders, mnist.npz files, CIFAR batch folders) to look at, in order."""
    data = _featbench_data()
    keras_dirs = _keras_home_datasets() + ([data / "keras" / "datasets"] if data is not None else [])
    idx_dirs: list[Path] = []
    npz: list[Path] = []
    cifar: list[Path] = []
    if name == "mnist":
        if data is not None:
            idx_dirs.append(data / "mnist")
        npz = [d / "mnist.npz" for d in keras_dirs]
    elif name == "fashion_mnist":
        if data is not None:
            idx_dirs.append(data / "fashion-mnist")
        idx_dirs += [d / "fashion-mnist" for d in keras_dirs]
    else:
        for d in keras_dirs:
            cifar += [d / "cifar-10-batches-py", d / "cifar-10-batches-py-target" / "cifar-10-batches-py"]
        if data is not None:
            cifar.append(data / "cifar-10-batches-py")
    return idx_dirs, npz, cifar


def _mnist_npz_parts(npz: Path) -> tuple[list[_Part], list[np.ndarray]]:
    digest = _sha256_hex(npz)
    parts: list[_Part] = []
    labels: list[np.ndarray] = []
    try:
        with zipfile.ZipFile(npz) as z:
            members = set(z.namelist())
            for split in ("train", "test"):
                x_name, y_name = f"x_{split}.npy", f"y_{split}.npy"
                if x_name not in members or y_name not in members:
                    raise DatasetError(
                        f"'{npz}' lacks {x_name} or {y_name}; expected Keras' mnist.npz "
                        "(x_train, y_train, x_test, y_test)"
                    )
                target = cache_dir() / "keras" / digest / x_name
                part = _npy_part(target) if target.is_file() else None
                if part is None:
                    def write(out, member=x_name, z=z) -> None:
                        with z.open(member) as src:
                            while chunk := src.read(1 << 22):
                                out.write(chunk)

                    _write_atomic(target, write)
                    part = _npy_part(target)
                if part is None or len(part[2]) not in (3, 4):
                    raise DatasetError(f"'{npz}' member {x_name} is not a uint8 image array (N, H, W[, 3])")
                with z.open(y_name) as f:
                    y = np.lib.format.read_array(f, allow_pickle=False)
                parts.append(part)
                labels.append(np.asarray(y).reshape(-1).astype(np.int64))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read Keras dataset file '{npz}': {exc}") from exc
    return parts, labels


def _cifar_parts(folder: Path) -> tuple[list[_Part], list[np.ndarray]]:
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 folder '{folder}' lacks {', '.join(missing)}")
    h = hashlib.sha256()
    for f in files:
        h.update(file_sha256(f))
    batches = []
    try:
        for f in files:
            with open(f, "rb") as fh:
                d = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
            x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(d["labels"], dtype=np.int64)
            if len(x) != len(y):
                raise DatasetError(f"CIFAR-10 batch '{f}' has {len(x)} images but {len(y)} labels")
            batches.append((x, y))
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(
            f"cannot read CIFAR-10 batch file in '{folder}': {type(exc).__name__}: {exc}"
        ) from exc
    n_train = sum(len(x) for x, _ in batches[:5])
    n_test = len(batches[5][0])
    target = cache_dir() / "keras" / f"cifar10-{h.hexdigest()}.npy"
    part = _npy_part(target) if target.is_file() else None
    if part is None or part[2] != (n_train + n_test, 32, 32, 3):

        def write(out) -> None:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "|u1", "fortran_order": False, "shape": (n_train + n_test, 32, 32, 3)}
            )
            for x, _ in batches:
                out.write(np.ascontiguousarray(x).tobytes())

        _write_atomic(target, write)
        part = _npy_part(target)
        if part is None:
            raise DatasetError(f"the cached copy '{target}' of '{folder}' cannot be read back")
    whole = part
    y_train = np.concatenate([y for _, y in batches[:5]])
    y_test = batches[5][1]
    return [whole], [y_train, y_test]


def _keras_download(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``keras.datasets.<name>.load_data()`` (imports Keras, may download)."""
    import importlib

    module = importlib.import_module(f"keras.datasets.{name}")
    return module.load_data()


@register_dataset("keras")
def load_keras(*, name: str, limit_per_class: int | None = None, seed: int = 0) -> ImageSet:
    """Keras datasets cifar10, mnist, fashion_mnist: local copies first, else Keras' download.

    Looked for, in order, without downloading:

    - mnist: ``$FEATBENCH_DATA/mnist`` with all four IDX files (then the ``idx``
      loader is used), Keras' cache ``$KERAS_HOME/datasets/mnist.npz`` (default
      ``~/.keras``), ``$FEATBENCH_DATA/keras/datasets/mnist.npz``;
    - fashion_mnist: the four IDX files in ``$FEATBENCH_DATA/fashion-mnist``, then
      ``$KERAS_HOME/datasets/fashion-mnist`` and ``$FEATBENCH_DATA/keras/datasets/fashion-mnist``;
    - cifar10: the extracted ``cifar-10-batches-py`` folder in ``$KERAS_HOME/datasets``
      (also under ``cifar-10-batches-py-target``, as Keras 3 stores it) or
      ``$FEATBENCH_DATA/keras/datasets``, ``$FEATBENCH_DATA``.

    Only then ``keras.datasets.<name>.load_data()`` is called (it downloads). Image
    arrays found locally are memory-mapped from ``$FEATBENCH_CACHE``. The official
    train/test split is kept as ``official_split``.

    Parameters
    ----------
    name : {"cifar10", "mnist", "fashion_mnist"}
        Which Keras dataset.
    limit_per_class : int or None, default None
        Keep at most this many images per class, in train and test separately.
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"keras:<name>"``; mnist and fashion_mnist are 28x28 gray, cifar10
        32x32 RGB.

    References
    ----------
    Source: ``keras.datasets`` (https://keras.io/api/datasets/); Krizhevsky 2009
    (CIFAR-10), LeCun et al. 1998 (MNIST), Xiao, Rasul & Vollgraf 2017 (Fashion-MNIST).
    """
    _check_common(limit_per_class, seed)
    if name not in _KERAS_NAMES:
        raise ConfigError(f"keras dataset name must be one of {', '.join(_KERAS_NAMES)}, got {name!r}")
    class_names = {"cifar10": CIFAR10_NAMES, "mnist": DIGIT_NAMES, "fashion_mnist": FASHION_MNIST_NAMES}[name]
    set_name = f"keras:{name}"
    idx_dirs, npz_files, cifar_dirs = _keras_places(name)

    for folder in idx_dirs:
        if folder.is_dir() and all(all(pair) for pair in _idx_parts_present(folder).values()):
            ds = load_idx(
                root=str(folder), class_names=class_names, limit_per_class=limit_per_class, seed=seed
            )
            ds.name = set_name
            return ds

    found: tuple[list[_Part], list[np.ndarray]] | None = None
    for npz in npz_files:
        if npz.is_file():
            found = _mnist_npz_parts(npz)
            break
    if found is None:
        for folder in cifar_dirs:
            if folder.is_dir():
                found = _cifar_parts(folder)
                break

    if found is None:
        looked = [f"{d}/ (4 IDX files)" for d in idx_dirs] + [str(p) for p in npz_files]
        looked += [f"{d}/" for d in cifar_dirs]
        hint = ""
        for folder in idx_dirs:
            parts = _idx_parts_present(folder) if folder.is_dir() else {}
            only = [p for p, pair in parts.items() if all(pair)]
            if len(only) == 1:
                hint = (
                    f"; '{folder}' holds only the {only[0]} part: dataset 'idx' with "
                    f"root='{folder}', subset='{only[0]}' loads it"
                )
                break
        try:
            (x_train, y_train), (x_test, y_test) = _keras_download(name)
        except Exception as exc:
            raise DatasetError(
                f"keras dataset {name!r} is not available offline and Keras could not download it "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); looked for: "
                f"{'; '.join(looked)}{hint}"
            ) from exc
        images = np.concatenate([np.asarray(x_train), np.asarray(x_test)]).astype(np.uint8, copy=False)
        found = ([np.ascontiguousarray(images)], [np.asarray(y_train), np.asarray(y_test)])

    parts, labels = found
    y_train, y_test = (np.asarray(y).reshape(-1).astype(np.int64) for y in labels)
    all_labels = np.concatenate([y_train, y_test])
    if len(all_labels) and (all_labels.min() < 0 or all_labels.max() >= len(class_names)):
        raise DatasetError(
            f"keras dataset {name!r} has labels outside 0..{len(class_names) - 1}: "
            f"{int(all_labels.min())}..{int(all_labels.max())}"
        )
    split = (np.arange(len(y_train)), np.arange(len(y_train), len(all_labels)))
    ds = _MappedImageSet(set_name, parts, all_labels, class_names, official_split=split)
    return _apply_limit(ds, limit_per_class, seed)
