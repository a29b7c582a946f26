"""Datasets: :class:`ImageSet` (lazy, indexable uint8 images + labels + fingerprint) and loaders.

Load a registered dataset with :func:`load_dataset`; ``featbench list datasets`` shows them all.
One module per loader family: :mod:`~featbench.datasets.builtin` (digits, faces, textures,
opencv-digits), :mod:`~featbench.datasets.folder`, :mod:`~featbench.datasets.idx` and
:mod:`~featbench.datasets.keras`; :mod:`~featbench.datasets.loading` holds :func:`load_dataset`.
"""

from featbench.datasets.base import ArrayImageSet, ImageSet, LazyImageSet, ListImageSet, Skipped, limit_per_class
from featbench.datasets.builtin import load_dataset  # registers every built-in loader
from featbench.datasets.io import decode_image
from featbench.images import as_uint8_image

__all__ = [
    "ImageSet",
    "ArrayImageSet",
    "LazyImageSet",
    "ListImageSet",
    "Skipped",
    "limit_per_class",
    "load_dataset",
    "decode_image",
    "as_uint8_image",
]
