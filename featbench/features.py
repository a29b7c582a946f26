"""The feature stage: fit an extractor per split, transform in parallel (joblib / dask), cache by content.

Given a dataset, an extractor and a split, :func:`split_features` serves the features of the training and
test images (:class:`Features`), from the on-disk cache (:mod:`featbench.cache`) when it has them. An
extractor that learns nothing (``spec.fitted`` False) is transformed once per dataset and sliced per
split; one that learns (a codebook, a network) is fitted on each split's training images only.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from tqdm.auto import tqdm

from featbench._memory import PeakMemory
from featbench.cache import FeatureCache, feature_key
from featbench.datasets import ImageSet
from featbench.evaluation import Split

__all__ = ["Features", "split_features", "request_features", "transform_parallel", "parallel_backend", "check_finite",
           "MIN_PARALLEL_IMAGES", "PROBE_IMAGES", "MIN_PARALLEL_SECONDS"]

# Below this many images, starting worker processes costs more than it saves.
MIN_PARALLEL_IMAGES = 256
# Images timed serially first to estimate the cost per image.
PROBE_IMAGES = 16
# Below this estimated serial time for the rest, shipping images to workers costs more than it saves
# (e.g. HOG at well under a millisecond per image): the rest is done serially too.
MIN_PARALLEL_SECONDS = 1.0
# Serial seconds of work aimed at per chunk sent to a worker.
CHUNK_SECONDS = 0.2


@dataclass
class Features:
    train: np.ndarray
    test: np.ndarray
    fit_s: float
    extract_ms_per_image: float
    from_cache: bool
    info: dict
    #: Peak resident memory (MiB) of the processes that computed the features, the largest of the client's
    #: and of each extraction worker's while they worked (``None``: features cached by an older version).
    peak_rss_mb: float | None = None


def split_features(extractor, images: ImageSet, split: Split, cache: FeatureCache, full: dict,
                   n_jobs: int, backend: str, disable_bars: bool | None) -> Features:
    """Features of ``split``'s training and test images.

    ``full`` is a dict the caller keeps per (dataset, extractor): the whole set's features of an extractor
    that learns nothing are computed once there and sliced for each split.
    """
    if not extractor.spec.fitted:
        if "X" not in full:
            key = feature_key(images.fingerprint, extractor)
            hit = cache.load(key)
            if hit is not None and hit[0].shape[0] == len(images):
                full["X"], meta = hit
                full["cached"] = True
            else:
                workers: dict = {}
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    extractor.fit(images[:0] if len(images) else images)
                    full["fitted_on"] = "nothing"
                    fit_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    X = transform_parallel(extractor, images, n_jobs, backend, disable_bars, memory=workers)
                    extract_s = time.perf_counter() - t0
                meta = {"fit_s": fit_s, "extract_s": extract_s, "n": len(images), "dim": X.shape[1],
                        "info": extractor.report_info(), "peak_rss_mb": max(mem.mb, workers.get("peak_rss_mb", 0))}
                cache.save(key, X, meta)
                full["X"], full["cached"] = X, False
            full["meta"] = meta
        X, meta = full["X"], full["meta"]
        return Features(X[split.train], X[split.test], meta["fit_s"],
                        1000 * meta["extract_s"] / max(meta["n"], 1), full["cached"], meta.get("info", {}),
                        meta.get("peak_rss_mb"))

    key = feature_key(images.fingerprint, extractor, split.digest)
    hit = cache.load(key)
    n_train = len(split.train)
    if hit is not None and hit[0].shape[0] == n_train + len(split.test):
        X, meta = hit
        cached = True
    else:
        train, test = images.subset(split.train), images.subset(split.test)
        workers = {}
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            extractor.fit(train, train.labels)
            full["fitted_on"] = _digest(split.train)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            X = np.concatenate([transform_parallel(extractor, part, n_jobs, backend, disable_bars, memory=workers)
                                for part in (train, test)])
            extract_s = time.perf_counter() - t0
        meta = {"fit_s": fit_s, "extract_s": extract_s, "n": len(X), "dim": X.shape[1],
                "info": extractor.report_info(), "peak_rss_mb": max(mem.mb, workers.get("peak_rss_mb", 0))}
        cache.save(key, X, meta)
        cached = False
    return Features(X[:n_train], X[n_train:], meta["fit_s"], 1000 * meta["extract_s"] / max(meta["n"], 1), cached,
                    meta.get("info", {}), meta.get("peak_rss_mb"))


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def request_features(extractor, images: ImageSet, split: Split, request, view_image, cache: FeatureCache,
                     full: dict, n_jobs: int, backend: str, disable_bars: bool | None) -> tuple[np.ndarray, dict]:
    """Features of a task's :class:`~featbench.tasks.FeatureRequest` for ``split``, and where they came from.

    Call after :func:`split_features` for the same (``extractor``, ``split``, ``full``). Images as they are of
    an extractor that learns nothing are sliced from the whole set's features; anything else is looked up in
    the cache under the extractor, the images, the images the extractor is fitted on and the view, and
    computed on a miss: the extractor is fitted again only when it was last fitted on other images, and
    ``view_image(image, view, seed)`` changes each image first (``seed`` fixed by the image's position, the
    same for every view of it: noise drawn at two severities differs in amplitude only).
    The dict says ``from_cache``, ``fit_s`` and ``extract_s`` (zero when nothing was computed).
    """
    positions = np.asarray(request.positions, dtype=np.int64)
    fit_positions = split.train if request.fit_positions is None else np.asarray(request.fit_positions, np.int64)
    fitted = extractor.spec.fitted
    if request.view is None and not fitted:
        return full["X"][positions], {"from_cache": True, "fit_s": 0.0, "extract_s": 0.0}
    fit_digest = _digest(fit_positions) if fitted else "nothing"
    key = feature_key(images.fingerprint, extractor,
                      "request:" + _digest(fit_digest, positions, request.view))
    hit = cache.load(key)
    if hit is not None and hit[0].shape[0] == len(positions):
        return hit[0], {"from_cache": True, "fit_s": 0.0, "extract_s": 0.0}
    fit_s = 0.0
    if full.get("fitted_on") != fit_digest:
        t0 = time.perf_counter()
        if fitted:
            part = images.subset(fit_positions)
            extractor.fit(part, part.labels)
        else:
            extractor.fit(images[:0] if len(images) else images)
        full["fitted_on"] = fit_digest
        fit_s = time.perf_counter() - t0
    part = images.subset(positions)
    if request.view is not None:
        from featbench.datasets import ListImageSet

        views = []
        for pos, image in zip(positions.tolist(), part):
            seed = int(_digest(pos)[:8], 16)  # by position only: every view of an image shares its seed
            views.append(view_image(image, request.view, seed))
        part = ListImageSet(images.name, views, part.labels, images.class_names)
    t0 = time.perf_counter()
    X = np.asarray(transform_parallel(extractor, part, n_jobs, backend, disable_bars), dtype=np.float32)
    extract_s = time.perf_counter() - t0
    cache.save(key, X, {"fit_s": fit_s, "extract_s": extract_s, "n": len(X), "dim": X.shape[1],
                        "request": {"view": request.view, "fit": fit_digest}})
    return X, {"from_cache": False, "fit_s": fit_s, "extract_s": extract_s}


def _transform_chunk(extractor, images, parent_pid: int) -> tuple[np.ndarray, float]:
    if os.getpid() != parent_pid:
        # A worker process per core already: OpenCV's own thread pool would only oversubscribe them.
        import cv2

        cv2.setNumThreads(1)
    with PeakMemory() as mem:
        X = extractor.transform(images)
    return X, mem.mb


def _transform_chunk_into(extractor, images, parent_pid: int, path: str, shape: tuple[int, int], start: int) -> float:
    """:func:`_transform_chunk` writing its rows into ``shape``'s float32 array in the file ``path``, from row
    ``start`` (the worker maps only those rows, only while it writes them); returns the peak memory."""
    X, peak = _transform_chunk(extractor, images, parent_pid)
    if len(X):
        rows = np.memmap(path, dtype=np.float32, mode="r+", offset=start * shape[1] * 4, shape=(len(X), shape[1]))
        rows[:] = X
        del rows
    return peak


def _shared_folder(nbytes: int) -> str | None:
    """Where a shared output of ``nbytes`` goes: ``$JOBLIB_TEMP_FOLDER``, else ``/dev/shm`` when it has room for
    twice as much (a full tmpfs would kill the workers with SIGBUS), else the system's temporary folder (None)."""
    folder = os.environ.get("JOBLIB_TEMP_FOLDER")
    if folder:
        return folder
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and hasattr(os, "statvfs"):
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize >= 2 * nbytes:
            return shm
    return None


@contextmanager
def _shared_output(shape: tuple[int, int]):
    """The path of a file holding a float32 array of ``shape`` that workers write into, and that array,
    mapped here. The file is unlinked on exit: its memory goes when the array does."""
    import mmap
    import tempfile

    nbytes = int(np.prod(shape)) * 4
    fd, path = tempfile.mkstemp(prefix="featbench-features-", suffix=".f32", dir=_shared_folder(nbytes))
    try:
        os.ftruncate(fd, nbytes)
        # A plain mmap, not an np.memmap: joblib would pass an np.memmap (and arrays over one) to workers by
        # the name of its file, which is gone once this returns; this array is pickled by value like any other.
        yield path, np.frombuffer(mmap.mmap(fd, nbytes), dtype=np.float32).reshape(shape)
    finally:
        os.close(fd)
        os.unlink(path)


def _note_peak(memory: dict | None, peak: float) -> None:
    if memory is not None:
        memory["peak_rss_mb"] = max(memory.get("peak_rss_mb", 0.0), peak)


def transform_parallel(extractor, images, n_jobs: int = -1, backend: str = "loky",
                       disable_bars: bool | None = True, memory: dict | None = None) -> np.ndarray:
    """``extractor.transform(images)`` split over workers in chunks; same result as serial.

    ``memory``, when given, gets ``"peak_rss_mb"``: the largest peak resident memory of a worker process
    while it transformed a chunk (the calling process's own is the caller's to measure).

    The first :data:`PROBE_IMAGES` images are transformed serially and timed; the rest go
    to the workers only when their estimated serial time is at least
    :data:`MIN_PARALLEL_SECONDS` (and there are :data:`MIN_PARALLEL_IMAGES` images or more).
    With the ``loky`` and ``threading`` backends the workers write their rows straight into one
    output in shared memory: no features travel back through pipes, and the caller copies nothing
    (for HOG's 7 KB of features per 0.05 ms image that traffic cost as much as the work).
    """
    n = len(images)
    workers = effective_n_jobs(n_jobs) if backend != "dask" else max(2, effective_n_jobs(n_jobs))
    if workers <= 1 or not extractor.spec.parallel or n < MIN_PARALLEL_IMAGES:
        return extractor.transform(images)
    take = images.subset if isinstance(images, ImageSet) else (lambda idx: [images[int(i)] for i in idx])
    probe = min(PROBE_IMAGES, n)
    t0 = time.perf_counter()
    head = np.asarray(extractor.transform(take(np.arange(probe))), dtype=np.float32)
    per_image = (time.perf_counter() - t0) / probe
    rest = np.arange(probe, n)
    if not len(rest):
        return head
    if per_image * len(rest) < MIN_PARALLEL_SECONDS:
        tail = np.asarray(extractor.transform(take(rest)), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate([head, tail], axis=0))
    # chunks of ~CHUNK_SECONDS of work, but 4 to 16 per worker (longer chunks for long jobs): a worker slowed by
    # something else running holds up the end of the run by at most one chunk; each dispatch stays negligible
    wanted = int(np.clip(round(per_image * len(rest) / CHUNK_SECONDS), workers * 4, workers * 16))
    chunks = [c for c in np.array_split(rest, min(len(rest), wanted)) if len(c)]
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    bar = {"total": len(chunks), "desc": f"  extract {type(extractor).__name__}", "unit": "chunk", "leave": False,
           "disable": disable_bars}
    shape = (n, head.shape[1])
    if backend == "dask" or not shape[1]:  # dask workers may be on other machines: the parts come back
        out = np.empty(shape, dtype=np.float32)
        out[:probe] = head
        parts = parallel(delayed(_transform_chunk)(extractor, take(c), os.getpid()) for c in chunks)
        for c, (X, peak) in zip(chunks, tqdm(parts, **bar)):
            out[c[0] : c[0] + len(c)] = X
            _note_peak(memory, peak)
        return out
    with _shared_output(shape) as (path, out):
        out[:probe] = head
        peaks = parallel(delayed(_transform_chunk_into)(extractor, take(c), os.getpid(), path, shape, int(c[0]))
                         for c in chunks)
        for peak in tqdm(peaks, **bar):
            _note_peak(memory, peak)
    return out


def _warm_worker() -> int:
    import featbench.extractors  # noqa: F401  (OpenCV, scikit-learn: imported once, before any timing)

    return os.getpid()


@contextmanager
def parallel_backend(name: str, scheduler: str | None, n_jobs: int):
    if name == "dask":
        try:
            from dask.distributed import Client
        except ImportError as exc:
            from featbench.errors import ConfigError

            raise ConfigError(
                "backend 'dask' needs dask.distributed: pip install 'featbench[dask]'"
            ) from exc
        try:
            # dask's own configuration applies, security included (TLS certificates, require-encryption)
            client = Client(scheduler) if scheduler else Client(processes=True)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            from featbench.errors import ConfigError

            where = f"scheduler {scheduler!r}" if scheduler else "a local dask cluster"
            raise ConfigError(f"[run] backend 'dask': cannot connect to {where}: "
                              f"{' '.join(str(exc).split())[:300]}") from exc
        try:
            with parallel_config(backend="dask"):
                yield
        finally:
            client.close()
    else:
        with parallel_config(backend=name) if name != "loky" else nullcontext():
            if name == "loky" and effective_n_jobs(n_jobs) > 1:
                # Start the worker pool now, so that no extractor's timing includes it.
                Parallel(n_jobs=n_jobs)(delayed(_warm_worker)() for _ in range(effective_n_jobs(n_jobs)))
            yield


def check_finite(feats: Features, extractor: str) -> None:
    """Non-finite features fail the cell, naming the extractor: they are never replaced in silence."""
    bad = [(name, X) for name, X in (("training", feats.train), ("test", feats.test)) if not np.isfinite(X).all()]
    if bad:
        parts = []
        for name, X in bad:
            rows = int((~np.isfinite(X)).any(axis=1).sum())
            parts.append(f"{int((~np.isfinite(X)).sum()):,} values in {rows:,} of {len(X):,} {name} images")
        raise ValueError(f"extractor {extractor!r} returned non-finite features (NaN or inf): {'; '.join(parts)}")
