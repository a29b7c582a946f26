"""On-disk feature cache keyed by dataset content, extractor parameters and split."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from featbench import __version__
from featbench._io import atomic_write, atomic_write_json

__all__ = ["FeatureCache", "default_cache_dir", "feature_key"]

# Bump when the meaning of cached features changes for all extractors.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$FEATBENCH_CACHE``, else ``$XDG_CACHE_HOME/featbench``, else ``~/.cache/featbench``."""
    if os.environ.get("FEATBENCH_CACHE"):
        return Path(os.environ["FEATBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "featbench"


def feature_key(fingerprint: str, extractor: Any, split_digest: str | None = None) -> str:
    """Cache key: dataset content hash + extractor class, version and parameters (+ split when fitted),
    + the content of files the parameters point at (:meth:`Extractor.content_token`)."""
    cls = type(extractor)
    payload = {
        "format": CACHE_FORMAT,
        "featbench": __version__,
        "dataset": fingerprint,
        "extractor": f"{cls.__module__}.{cls.__qualname__}",
        "version": getattr(cls, "cache_version", 1),
        "params": {k: repr(v) for k, v in sorted(extractor.get_params().items())},
        "split": split_digest,
    }
    token = extractor.content_token() if hasattr(extractor, "content_token") else None
    if token is not None:  # e.g. the weights file's hash: replacing the file invalidates the features
        payload["content"] = token
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """Features stored as ``<key>.npy`` with a ``<key>.json`` of metadata (timings, shapes).

    ``root=None`` disables caching.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def load(self, key: str) -> tuple[np.ndarray, dict] | None:
        if self.root is None:
            return None
        meta_path, arr_path = self.root / f"{key}.json", self.root / f"{key}.npy"
        if not (meta_path.is_file() and arr_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            arr = np.load(arr_path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed, not trusted
        return arr, meta

    def save(self, key: str, features: np.ndarray, meta: dict) -> None:
        if self.root is None:
            return
        atomic_write(self.root / f"{key}.npy", lambda f: np.save(f, features, allow_pickle=False))
        atomic_write_json(self.root / f"{key}.json", meta)  # written last: marks the entry complete
