"""Train/test splits: the dataset's official split, repeated stratified hold-out, stratified k-fold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedShuffleSplit

from featbench.errors import ConfigError

__all__ = ["Protocol", "Split", "make_splits"]

KINDS = ("official", "holdout", "kfold")


@dataclass(frozen=True)
class Protocol:
    """How a dataset is split.

    Attributes
    ----------
    kind : {"official", "holdout", "kfold"}
    repeats : int
        Hold-out: number of random splits; k-fold: number of repetitions of the k folds.
    test_size : float or int
        Hold-out: fraction (0, 1) or number of test images.
    train_size : float, int or None
        Hold-out: fraction or number of training images; None = the complement.
    folds : int
        k-fold: k.
    seed : int
    """

    kind: str = "holdout"
    repeats: int = 3
    test_size: float | int = 0.25
    train_size: float | int | None = None
    folds: int = 5
    seed: int = 0


@dataclass(frozen=True)
class Split:
    """Positions of the training and test images in the dataset."""

    id: str
    train: np.ndarray
    test: np.ndarray

    @property
    def digest(self) -> str:
        """Hash of the positions, so caches key on the split's content, not its name."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.train, dtype=np.int64).tobytes())
        h.update(b"|")
        h.update(np.ascontiguousarray(self.test, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def make_splits(
    labels: np.ndarray,
    protocol: Protocol,
    official: tuple[np.ndarray, np.ndarray] | None = None,
    dataset: str = "dataset",
) -> list[Split]:
    """The splits ``protocol`` asks for, stratified on ``labels``, deterministic for ``protocol.seed``."""
    labels = np.asarray(labels)
    if protocol.kind == "official":
        if official is None:
            raise ConfigError(
                f"dataset {dataset!r} has no official split; use protocol kind 'holdout' or 'kfold'"
            )
        return [Split("official", np.sort(official[0]), np.sort(official[1]))]
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if protocol.kind == "holdout":
        splitter = StratifiedShuffleSplit(
            n_splits=protocol.repeats,
            test_size=protocol.test_size,
            train_size=protocol.train_size,
            random_state=protocol.seed,
        )
        prefix = "holdout"
    elif protocol.kind == "kfold":
        if counts.min() < protocol.folds:
            raise ConfigError(
                f"dataset {dataset!r}: kfold with folds={protocol.folds} needs at least {protocol.folds} "
                f"images per class, the smallest class has {counts.min()}; lower folds"
            )
        splitter = RepeatedStratifiedKFold(
            n_splits=protocol.folds, n_repeats=protocol.repeats, random_state=protocol.seed
        )
        prefix = "fold"
    else:
        raise ConfigError(f"protocol kind {protocol.kind!r} is not one of {', '.join(KINDS)}")
    try:
        parts = list(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as exc:
        raise ConfigError(f"dataset {dataset!r}: cannot split {len(labels)} images as asked: {exc}") from exc
    return [Split(f"{prefix}-{i}", np.sort(tr), np.sort(te)) for i, (tr, te) in enumerate(parts)]
