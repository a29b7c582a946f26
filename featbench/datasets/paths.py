"""Resolving the paths loaders are given: environment variables, ``$FEATBENCH_DATA``, the cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from featbench._paths import expand_path, featbench_data
from featbench.cache import default_cache_dir
from featbench.datasets.io import file_sha256
from featbench.errors import ConfigError

__all__ = ["as_path_str", "cache_dir", "expand_path", "featbench_data", "locate", "looked_also", "sha256_hex"]


def as_path_str(value: Any, key: str) -> str:
    """``value`` as a non-empty path string; a :class:`ConfigError` naming ``key`` otherwise."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty path string, got {value!r}")
    return value


def locate(value: str, what: str) -> tuple[Path, list[Path]]:
    """Resolve a user path: as given (relative to the current directory), else under ``$FEATBENCH_DATA``.

    Parameters
    ----------
    value : str
        The path as the user wrote it (``~`` and ``$VARS`` are expanded).
    what : str
        What the path is, for error messages.

    Returns
    -------
    path : Path
        The absolute path to use (the first one looked at when none exists).
    tried : list of Path
        Every place looked at, in order.
    """
    path = Path(expand_path(value, what))
    tried = [Path(os.path.abspath(path))]
    if path.exists() or path.is_absolute():
        return tried[0], tried
    data = featbench_data()
    if data is not None:
        alt = Path(os.path.abspath(data / path))
        tried.append(alt)
        if alt.exists():
            return alt, tried
    return tried[0], tried


def looked_also(tried: list[Path]) -> str:
    """`` (also looked in '...')`` for the places after the first, or ``""``."""
    return "" if len(tried) < 2 else " (also looked in " + ", ".join(f"'{p}'" for p in tried[1:]) + ")"


def cache_dir() -> Path:
    """Folder for featbench's derived files (decompressed datasets): :func:`featbench.cache.default_cache_dir`."""
    return default_cache_dir()


def sha256_hex(path: Path) -> str:
    """SHA-256 of the file's content, hex."""
    return file_sha256(path).hex()
