"""Helpers every loader shares: parameter checks, per-class limits, class names."""

from __future__ import annotations

from typing import Any

import numpy as np

from featbench.datasets.base import ImageSet
from featbench.datasets.base import limit_per_class as select_per_class
from featbench.errors import ConfigError

__all__ = [
    "CIFAR10_NAMES",
    "DIGIT_NAMES",
    "FASHION_MNIST_NAMES",
    "apply_limit",
    "check_common",
    "int_param",
]

DIGIT_NAMES = [str(d) for d in range(10)]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def check_common(limit: Any, seed: Any) -> None:
    """Check the ``limit_per_class`` and ``seed`` parameters every loader takes."""
    not_int = isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
    if limit is not None and (not_int or limit < 1):
        raise ConfigError(f"limit_per_class must be a positive integer or None, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


def int_param(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; a :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def apply_limit(ds: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """Keep at most ``limit`` images per class (per part of the official split), chosen with ``seed``."""
    if limit is None:
        return ds
    labels = ds.labels
    split = ds.official_split
    if split is None:
        return ds.subset(select_per_class(labels, limit, seed))
    train, test = (np.asarray(p, dtype=np.int64) for p in split)
    keep_train = np.sort(train[select_per_class(labels[train], limit, seed)])
    keep_test = np.sort(test[select_per_class(labels[test], limit, seed)])
    keep = np.sort(np.concatenate([keep_train, keep_test]))
    out = ds.subset(keep)
    out.official_split = (np.searchsorted(keep, keep_train), np.searchsorted(keep, keep_test))
    return out
