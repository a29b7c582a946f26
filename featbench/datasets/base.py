"""`ImageSet`: lazy, indexable images with labels and a content fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageSet", "ArrayImageSet", "LazyImageSet", "ListImageSet", "Skipped", "limit_per_class"]


@dataclass(frozen=True)
class Skipped:
    """An item a loader left out (an unreadable file), and why."""

    source: str
    reason: str


class ImageSet:
    """Images (uint8, ``HxW`` gray or ``HxWx3`` RGB) with integer labels.

    Subclasses implement :meth:`_load` (decode one image by position in the
    underlying storage). ``self._index`` maps positions of this set to storage
    positions, so subsets are cheap views that stay lazy and picklable.

    Attributes
    ----------
    name : str
        Dataset name as shown in reports.
    labels : ndarray of int64, shape (n,)
    class_names : list of str
        ``class_names[label]`` is the label's name.
    official_split : tuple of (ndarray, ndarray) or None
        Train and test positions of the dataset's own split, if it has one.
    skipped : list of Skipped
        Items the loader left out (counted in reports).
    dropped_classes : list of Skipped
        Classes the loader left out because none of their images could be read
        (``source`` is e.g. the class folder, ``reason`` says how many files were
        skipped); they are not in ``class_names`` and reports warn about them.
    """

    def __init__(
        self,
        name: str,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        *,
        index: np.ndarray | None = None,
        official_split: tuple[np.ndarray, np.ndarray] | None = None,
        skipped: list[Skipped] | None = None,
        dropped_classes: list[Skipped] | None = None,
    ) -> None:
        self.name = name
        self._all_labels = np.asarray(labels, dtype=np.int64)
        self._index = np.arange(len(self._all_labels)) if index is None else np.asarray(index, dtype=np.int64)
        self.class_names = list(class_names)
        self.official_split = official_split
        self.skipped = list(skipped or [])
        self.dropped_classes = list(dropped_classes or [])
        self._fingerprint: str | None = None

    def __setstate__(self, state: dict) -> None:
        state.setdefault("dropped_classes", [])  # sets pickled before the attribute existed
        self.__dict__.update(state)

    # -- to implement -------------------------------------------------------
    def _load(self, storage_pos: int) -> np.ndarray:
        raise NotImplementedError

    def _uniform_uint8(self) -> bool:
        """True when every image is known to be uint8 ``HxW`` or ``HxWx3`` without loading it
        (extractors then skip their per-image check, see :func:`featbench.images.as_uint8_images`)."""
        return False

    def _content_digest(self, h: Any) -> None:
        """Feed the content of the images in ``self._index`` order into ``h``."""
        for pos in self._index:
            img = np.ascontiguousarray(self._load(int(pos)))
            h.update(str(img.shape).encode())
            h.update(img.tobytes())

    # -- public API -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            n = len(self._index)
            if not -n <= i < n:
                raise IndexError(f"image index {i} out of range for {self.name!r} ({n} images)")
            return self._load(int(self._index[i]))
        return self.subset(np.arange(len(self._index))[i])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def labels(self) -> np.ndarray:
        return self._all_labels[self._index]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, positions: Sequence[int] | np.ndarray) -> ImageSet:
        """A lazy view of the images at ``positions`` (of this set)."""
        positions = np.asarray(positions, dtype=np.int64)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._index = self._index[positions]
        new.official_split = None
        new._fingerprint = None
        return new

    @property
    def fingerprint(self) -> str:
        """SHA-256 of labels and image content (not of paths), hex."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.labels).tobytes())
            h.update("\0".join(self.class_names).encode())
            self._content_digest(h)
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.n_classes})"


class ArrayImageSet(ImageSet):
    """Images held in one array (in memory or memory-mapped), ``(N, H, W[, 3])`` uint8."""

    def __init__(self, name: str, images: np.ndarray, labels, class_names, **kw) -> None:
        if images.dtype != np.uint8:
            raise TypeError(f"ArrayImageSet needs uint8 images, got {images.dtype}")
        super().__init__(name, labels, class_names, **kw)
        self._images = images

    def _load(self, storage_pos: int) -> np.ndarray:
        return np.asarray(self._images[storage_pos])

    def _uniform_uint8(self) -> bool:
        shape = self._images.shape
        return (len(shape) == 3 or (len(shape) == 4 and shape[3] == 3)) and shape[1] > 0 and shape[2] > 0

    def __getstate__(self) -> dict:
        # A subset sent to a worker process carries its own images only, not the whole array.
        state = dict(self.__dict__)
        idx = self._index
        if not (len(idx) == len(self._images) and np.array_equal(idx, np.arange(len(idx)))):
            state["_images"] = np.ascontiguousarray(self._images[idx])
            state["_all_labels"] = self._all_labels[idx]
            state["_index"] = np.arange(len(idx))
            state["official_split"] = None
        return state

    def _content_digest(self, h: Any) -> None:
        h.update(str(self._images.shape[1:]).encode())
        idx = self._index
        if len(idx) == len(self._images) and np.array_equal(idx, np.arange(len(idx))):
            h.update(np.ascontiguousarray(self._images).tobytes())
        else:
            for start in range(0, len(idx), 4096):
                h.update(np.ascontiguousarray(self._images[idx[start : start + 4096]]).tobytes())


class LazyImageSet(ImageSet):
    """Images decoded on access by ``load(source)``; fingerprinted by ``digest(source)``.

    ``sources`` are e.g. file paths; ``load`` and ``digest`` must be picklable
    (module-level functions) so that parallel workers can use the set.
    """

    def __init__(
        self,
        name: str,
        sources: Sequence[Any],
        labels,
        class_names,
        load: Callable[[Any], np.ndarray],
        digest: Callable[[Any], bytes],
        **kw,
    ) -> None:
        super().__init__(name, labels, class_names, **kw)
        self._sources = list(sources)
        self._loader = load
        self._digester = digest

    def _load(self, storage_pos: int) -> np.ndarray:
        return self._loader(self._sources[storage_pos])

    def _content_digest(self, h: Any) -> None:
        for pos in self._index:
            h.update(self._digester(self._sources[int(pos)]))

    def source(self, i: int) -> Any:
        """The source (e.g. path) of image ``i``."""
        return self._sources[int(self._index[i])]


class ListImageSet(ImageSet):
    """Images held in a list of arrays of any sizes (e.g. transformed copies of another set's images).

    A subset sent to a worker process carries its own images only.
    """

    def __init__(self, name: str, images: Sequence[np.ndarray], labels, class_names, **kw) -> None:
        super().__init__(name, labels, class_names, **kw)
        if len(images) != len(self._all_labels):
            raise ValueError(f"{len(images)} images for {len(self._all_labels)} labels")
        self._images = list(images)

    def _load(self, storage_pos: int) -> np.ndarray:
        return self._images[storage_pos]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        idx = self._index
        if not (len(idx) == len(self._images) and np.array_equal(idx, np.arange(len(idx)))):
            state["_images"] = [self._images[int(i)] for i in idx]
            state["_all_labels"] = self._all_labels[idx]
            state["_index"] = np.arange(len(idx))
            state["official_split"] = None
        return state


def limit_per_class(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Positions keeping at most ``limit`` items per class, chosen with ``seed``, sorted.

    ``limit=None`` keeps everything.
    """
    labels = np.asarray(labels)
    if limit is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        if len(pos) > limit:
            pos = np.sort(rng.choice(pos, size=limit, replace=False))
        keep.append(pos)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)

