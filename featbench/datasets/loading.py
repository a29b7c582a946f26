""":func:`load_dataset`: a registered dataset by name, its parameters checked against its loader."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from featbench.datasets.base import ImageSet
from featbench.errors import ConfigError, DatasetError
from featbench.registry import DATASETS

__all__ = ["load_dataset"]


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
        With images of at least 2 classes.

    Raises
    ------
    UnknownNameError
        If no dataset is registered as ``name`` (with close matches).
    ConfigError
        If a parameter name is not accepted by the loader (the message lists the
        accepted ones) or a required parameter is missing.
    DatasetError
        If the data cannot be found or read, or the set has images of fewer than
        2 classes (a classifier needs 2).
    """
    loader = DATASETS.get(name)
    _check_params(name, loader, params)
    result = loader(**params)
    if not isinstance(result, ImageSet):
        raise DatasetError(
            f"dataset loader {name!r} returned {type(result).__name__}, expected an ImageSet"
        )
    _check_two_classes(name, params, result)
    return result


def _check_params(name: str, loader: Callable[..., Any], params: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(loader)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    named = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepted = [p.name for p in named]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    wrong = [k for k in params if k not in accepted]
    if wrong and not takes_any:
        raise ConfigError(
            f"unknown parameter {', '.join(map(repr, wrong))} for dataset {name!r}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    missing = [p.name for p in named if p.default is p.empty and p.name not in params]
    if missing:
        raise ConfigError(
            f"dataset {name!r} needs parameter {', '.join(map(repr, missing))}; "
            f"accepted: {', '.join(accepted)}"
        )


def _check_two_classes(name: str, params: dict[str, Any], result: ImageSet) -> None:
    present = np.unique(result.labels)
    if len(present) >= 2:
        return
    where = f" (root {params['root']!r})" if "root" in params else ""
    found = ", ".join(repr(result.class_names[c]) if 0 <= c < result.n_classes else str(c) for c in present)
    dropped = "; ".join(f"{d.source}: {d.reason}" for d in result.dropped_classes)
    raise DatasetError(
        f"dataset {name!r}{where}, loaded as {result.name!r}: at least 2 classes with readable images are "
        f"needed to train and test a classifier, found {len(present)}{f' ({found})' if found else ''}"
        f"{f'; dropped: {dropped}' if dropped else ''}"
    )
