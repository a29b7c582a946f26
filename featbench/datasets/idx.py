"""The ``idx`` loader: MNIST-format IDX files, decompressed once into the cache and memory-mapped."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from featbench.datasets.base import ImageSet
from featbench.datasets.common import DIGIT_NAMES, apply_limit, check_common
from featbench.datasets.mapped import MappedImageSet, Part, cached_npy, write_npy
from featbench.datasets.paths import as_path_str, cache_dir, featbench_data, locate, looked_also, sha256_hex
from featbench.errors import ConfigError, DatasetError
from featbench.registry import register_dataset

__all__ = ["load_idx", "idx_parts_present"]

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_EXPECTED = (
    "expected MNIST-format files train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] "
    "and/or t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz]"
)


# -- finding the files -----------------------------------------------------------------------


def _idx_candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # as in the original archive's member names
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in _idx_candidates(stem):
        if (folder / name).is_file():
            return folder / name
    return None


def idx_parts_present(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """``{"train": (images file, labels file), "test": (...)}``, None where a file is missing."""
    return {part: (_find_idx(folder, img), _find_idx(folder, lab)) for part, (img, lab) in _IDX_STEMS.items()}


# -- reading them ----------------------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_idx(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _read_idx_header(f: IO[bytes], path: Path, expected_magic: int) -> tuple[int, ...]:
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


def _idx_pixel_chunks(path: Path, n_bytes: int, mismatch: str):
    """The pixel bytes of a gzipped IDX images file, in chunks; exactly ``n_bytes`` or a DatasetError."""
    with gzip.open(path, "rb") as src:
        src.read(16)
        remaining = n_bytes
        while remaining:
            chunk = src.read(min(remaining, 1 << 22))
            if not chunk:
                raise DatasetError(f"{mismatch} but holds only {n_bytes - remaining}")
            yield chunk
            remaining -= len(chunk)
        if src.read(1):
            raise DatasetError(f"{mismatch} but holds more")


def _idx_in_memory(path: Path, n_bytes: int, dims: tuple[int, ...], mismatch: str) -> np.ndarray:
    with gzip.open(path, "rb") as src:
        src.read(16)
        data = src.read()
    if len(data) != n_bytes:
        raise DatasetError(f"{mismatch} but holds {len(data)}") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _idx_images(path: Path) -> Part:
    """Images of an IDX file as a memory-mappable part (gzipped files are decompressed into the cache)."""
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

    target = cache_dir() / "idx" / f"{sha256_hex(path)}.npy"
    try:
        part = cached_npy(target, lambda out: write_npy(out, dims, _idx_pixel_chunks(path, n_bytes, mismatch)), dims)
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file '{path}': {exc}") from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not path.exists():
            raise DatasetError(f"IDX file '{path}' disappeared while reading") from exc
        warnings.warn(
            f"cannot write the decompressed copy of '{path}' to '{target}' ({exc}); holding it in memory "
            "instead (set FEATBENCH_CACHE to a writable folder to avoid this)",
            stacklevel=4,
        )
        return _idx_in_memory(path, n_bytes, dims, mismatch)
    if part is None or part[2] != dims:
        raise DatasetError(f"the decompressed copy '{target}' of '{path}' cannot be read back")
    return part


# -- the loader ------------------------------------------------------------------------------


def _idx_folder(root: str | None) -> Path:
    if root is None:
        data = featbench_data()
        if data is None:
            raise DatasetError(
                "idx dataset needs root=<folder with MNIST-format files>, or the FEATBENCH_DATA "
                "environment variable (then $FEATBENCH_DATA/mnist is used); neither is set"
            )
        value = str(data / "mnist")
    else:
        value = as_path_str(root, "root")
    folder, tried = locate(value, "idx folder")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else f"does not exist{looked_also(tried)}"
        raise DatasetError(f"idx folder '{folder}' {what}; {_EXPECTED}")
    return folder


def _class_names(class_names: Sequence[str] | None) -> list[str]:
    names = DIGIT_NAMES if class_names is None else class_names
    if isinstance(names, str) or not all(isinstance(c, str) for c in names) or not names:
        raise ConfigError(f"class_names must be a list of strings, got {class_names!r}")
    return list(names)


def _parts_to_load(folder: Path, present: dict, subset: str) -> list[str]:
    """The parts ("train", "test") to read for ``subset``, or a DatasetError saying what is missing."""
    complete = [p for p in ("train", "test") if all(present[p])]
    halves = [
        f"{p} {'labels' if present[p][1] else 'images'} without its {'images' if present[p][1] else 'labels'}"
        for p in ("train", "test")
        if any(present[p]) and not all(present[p])
    ]
    half_note = f" (found only {'; '.join(halves)})" if halves else ""
    if subset != "all":
        if subset not in complete:
            img, lab = _IDX_STEMS[subset]
            raise DatasetError(
                f"idx folder '{folder}' has no {subset} part{half_note}; expected {img}[.gz] and {lab}[.gz]"
            )
        return [subset]
    if not complete:
        raise DatasetError(f"idx folder '{folder}' holds no complete image+label pair{half_note}; {_EXPECTED}")
    if len(complete) == 1:
        missing = "train" if complete[0] == "test" else "test"
        warnings.warn(
            f"idx folder '{folder}' has only the {complete[0]} part (no {missing} files{half_note}); "
            f"loading the {complete[0]} part alone, without an official split",
            stacklevel=3,
        )
    return complete


def _read_part(img_path: Path, lab_path: Path, names: list[str]) -> tuple[Part, np.ndarray]:
    lab = _idx_labels(lab_path)
    img = _idx_images(img_path)
    count = img.shape[0] if isinstance(img, np.ndarray) else img[2][0]
    if count != len(lab):
        raise DatasetError(f"IDX images file '{img_path}' has {count} images but '{lab_path}' has {len(lab)} labels")
    if len(lab) and lab.max() >= len(names):
        raise DatasetError(
            f"IDX labels file '{lab_path}' has label {int(lab.max())} but only {len(names)} class names "
            f"are given ({', '.join(names)}); pass class_names with one name per label"
        )
    return img, lab


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
    ``<cache>/idx/<sha256 of the .gz>.npy`` (cache: ``$FEATBENCH_CACHE``, else
    ``$XDG_CACHE_HOME/featbench``, else ``~/.cache/featbench``) and memory-mapped, so
    a 70,000-image set is never held in memory at once. With both parts, the set
    holds train then test and ``official_split`` is (train positions, test positions).

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
    check_common(limit_per_class, seed)
    if subset not in ("all", "train", "test"):
        raise ConfigError(f"subset must be 'all', 'train' or 'test', got {subset!r}")
    names = _class_names(class_names)
    folder = _idx_folder(root)
    present = idx_parts_present(folder)
    arrays: list[Part] = []
    labels: list[np.ndarray] = []
    for part in _parts_to_load(folder, present, subset):
        img, lab = _read_part(*present[part], names)
        arrays.append(img)
        labels.append(lab)

    all_labels = np.concatenate(labels)
    split = None
    if len(arrays) == 2:
        n_train = len(labels[0])
        split = (np.arange(n_train), np.arange(n_train, len(all_labels)))
    ds = MappedImageSet(f"idx:{folder.name}", arrays, all_labels, names, official_split=split)
    return apply_limit(ds, limit_per_class, seed)
