"""On-disk feature cache keyed by dataset content, extractor parameters and split."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from featbench._io import atomic_write, atomic_write_json
from featbench.version import __version__

__all__ = ["FeatureCache", "default_cache_dir", "feature_key", "usable_cache"]

log = logging.getLogger("featbench")

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
    params = extractor.get_params()
    # A parameter added to an extractor after its features were cached (e.g. sift's color) is left out at
    # the default that computes what was cached before it, so existing cache entries stay valid.
    for name, default in getattr(cls, "cache_key_defaults", {}).items():
        if name in params and isinstance(params[name], type(default)) and params[name] == default:
            del params[name]
    payload = {
        "format": CACHE_FORMAT,
        "featbench": __version__,
        "dataset": fingerprint,
        "extractor": f"{cls.__module__}.{cls.__qualname__}",
        "version": getattr(cls, "cache_version", 1),
        "params": {k: repr(v) for k, v in sorted(params.items())},
        "split": split_digest,
    }
    token = extractor.content_token() if hasattr(extractor, "content_token") else None
    if token is not None:  # e.g. the weights file's hash: replacing the file invalidates the features
        payload["content"] = token
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def usable_cache(cache_dir: str | None = None) -> FeatureCache:
    """The feature cache of a run: ``cache_dir`` (``""``: none), else :func:`default_cache_dir`.

    A folder that cannot be created or written (read-only, ``/proc/...``, a file) does not stop the run:
    one warning is logged and the run goes on without a cache (``FeatureCache.problem`` says why).
    """
    if cache_dir == "":
        return FeatureCache(None)
    root = Path(os.path.expandvars(os.path.expanduser(str(cache_dir)))) if cache_dir is not None \
        else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".featbench-write-test.", dir=root)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        cache = FeatureCache(None)
        cache.disable(f"feature cache {str(root)!r} is not usable ({exc.strerror or exc})")
        return cache
    return FeatureCache(root)


class FeatureCache:
    """Features stored as ``<key>.npy`` with a ``<key>.json`` of metadata (timings, shapes).

    ``root=None`` disables caching. A write that fails (disk full, permissions changed) disables the
    cache for the rest of the run with one warning; the features just computed are still used.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.problem: str | None = None

    def disable(self, problem: str) -> None:
        """Stop using the cache, with one warning saying why."""
        self.problem = problem
        self.root = None
        log.warning("%s; running without a feature cache (features are computed, not stored)", problem)

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
        try:
            atomic_write(self.root / f"{key}.npy", lambda f: np.save(f, features, allow_pickle=False))
            atomic_write_json(self.root / f"{key}.json", meta)  # written last: marks the entry complete
        except OSError as exc:
            self.disable(f"feature cache {str(self.root)!r} cannot be written ({exc.strerror or exc})")
