"""Image sets stored in uint8 arrays on disk, memory-mapped on first use, and their ``.npy`` cache files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from featbench._io import atomic_write
from featbench.datasets.base import ImageSet
from featbench.errors import DatasetError

__all__ = ["MappedImageSet", "Part", "cached_npy", "npy_part", "write_npy"]

#: Part of a memory-mapped set: an in-memory array, or (file, byte offset, shape) of
#: raw C-ordered uint8 data opened with ``np.memmap`` on first use.
Part = np.ndarray | tuple[str, int, tuple[int, ...]]


def npy_part(path: Path) -> tuple[str, int, tuple[int, ...]] | None:
    """The (file, offset, shape) of a C-ordered uint8 ``.npy`` file, or None if it is not one."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return None
    if not isinstance(arr, np.memmap) or arr.dtype != np.uint8 or not arr.flags.c_contiguous:
        return None
    part = (str(path), int(arr.offset), tuple(int(s) for s in arr.shape))
    del arr
    return part


def write_npy(out: IO[bytes], shape: tuple[int, ...], chunks: Any) -> None:
    """Write a uint8 ``.npy`` file of ``shape`` to ``out`` from the byte ``chunks`` of its data."""
    np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
    for chunk in chunks:
        out.write(chunk)


def cached_npy(
    target: Path, write: Callable[[IO[bytes]], Any], shape: tuple[int, ...] | None = None
) -> tuple[str, int, tuple[int, ...]] | None:
    """The part of the uint8 ``.npy`` file ``target``, written first by ``write`` (atomically) unless it
    is already there with ``shape`` (any shape when None). None if it cannot be read back."""
    part = npy_part(target) if target.is_file() else None
    if part is not None and (shape is None or part[2] == tuple(shape)):
        return part
    atomic_write(target, write)
    return npy_part(target)


class MappedImageSet(ImageSet):
    """Images stored in one or more uint8 arrays of equal image shape, concatenated.

    On-disk parts are memory-mapped on first access (never read whole), and the
    maps are dropped when pickled, so parallel workers reopen the files instead of
    receiving copies. The fingerprint equals that of an :class:`ArrayImageSet` with
    the same content.
    """

    def __init__(self, name: str, parts: Sequence[Part], labels, class_names, **kw) -> None:
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

    def _uniform_uint8(self) -> bool:
        shape = self._image_shape
        return (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) and shape[0] > 0 and shape[1] > 0

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
