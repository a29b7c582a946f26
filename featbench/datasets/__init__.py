"""Datasets: :class:`ImageSet` (lazy, indexable uint8 images + labels + fingerprint) and loaders.

Load a registered dataset with :func:`load_dataset`; ``featbench list datasets`` shows them all.
"""

from featbench.datasets.base import ArrayImageSet, ImageSet, LazyImageSet, Skipped, limit_per_class
from featbench.datasets.builtin import load_dataset
from featbench.datasets.io import decode_image

__all__ = [
    "ImageSet",
    "ArrayImageSet",
    "LazyImageSet",
    "Skipped",
    "limit_per_class",
    "load_dataset",
    "decode_image",
]
