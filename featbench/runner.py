"""Run an experiment: datasets × extractors × splits × classifiers, cached, parallel, resumable.

Each (dataset, extractor, classifier, split) cell writes one JSON record to
``<out>/cells/`` atomically as soon as it finishes. Starting the same run again
reuses every finished cell (``skip_existing``, the default) and recomputes only
the missing ones and those that had failed or been skipped. Features are cached
on disk (:mod:`featbench.cache`), so a new classifier on old features costs no
extraction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from tqdm.auto import tqdm

from featbench import __version__
from featbench.cache import FeatureCache, feature_key, usable_cache
from featbench.classifiers import fit_with_c_search
from featbench.config import Experiment, ExtractorConfig, load_experiment
from featbench.datasets import ImageSet, load_dataset
from featbench.errors import ConfigError, DatasetError, FeatbenchError, WeightsUnavailableError
from featbench.evaluation import Split, classification_metrics, make_splits, peak_rss_mb
from featbench.records import check_output_dir, read_cell, write_cell
from featbench.registry import CLASSIFIERS, create_extractor

__all__ = ["run", "RunResult", "transform_parallel"]

log = logging.getLogger("featbench")

# Below this many images, starting worker processes costs more than it saves.
MIN_PARALLEL_IMAGES = 256
# Images timed serially first to estimate the cost per image.
PROBE_IMAGES = 16
# Below this estimated serial time for the rest, shipping images to workers costs more than it saves
# (e.g. HOG at well under a millisecond per image): the rest is done serially too.
MIN_PARALLEL_SECONDS = 1.0


@dataclass
class RunResult:
    """What :func:`run` produced."""

    out_dir: Path
    records: list[dict]
    computed: int
    reused: int

    @property
    def report(self) -> Path:
        return self.out_dir / "report.md"


def run(
    experiment: str | Path | Experiment,
    out: str | Path | None = None,
    *,
    skip_existing: bool = True,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Run ``experiment`` (a path to a TOML file or a parsed :class:`Experiment`).

    Parameters
    ----------
    out : path, optional
        Output folder; default ``results/<experiment name>``.
    skip_existing : bool
        Reuse finished cells found in ``<out>/cells``.
    n_jobs : int, optional
        Overrides ``[run] n_jobs``.
    progress : bool, optional
        Progress bars; default: only when stderr is a terminal.
    """
    from featbench.reporting import write_reports

    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
        raise ConfigError(f"--n-jobs must be -1 (all cores) or a positive number of workers, got {n_jobs!r}")
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    out_dir = Path(out) if out is not None else Path("results") / exp.name
    cells_dir = out_dir / "cells"
    settings = exp.run
    jobs = n_jobs if n_jobs is not None else settings.n_jobs
    disable_bars = None if progress is None else not progress
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()

    # Everything a user can get wrong is checked before the first cell runs.
    check_output_dir(out_dir)
    cache = usable_cache(settings.cache_dir)
    loaded: list[tuple[Any, ImageSet, list[Split]]] = []
    for dcfg in exp.datasets:
        images = _load(dcfg)
        splits = make_splits(images.labels, dcfg.protocol, images.official_split, dataset=dcfg.label)
        loaded.append((dcfg, images, splits))
    classifiers = [(c, CLASSIFIERS.get(c.name)()) for c in exp.classifiers]
    check_memory(exp, loaded)

    n_cells = sum(len(s) for _, _, s in loaded) * len(exp.extractors) * len(classifiers)
    slots: dict[str, dict] = {}  # cell id -> record, filled in any order, reported in the experiment's order
    order: list[str] = []
    computed = reused = 0
    bar = tqdm(total=n_cells, desc=f"featbench {exp.name}", unit="cell", disable=disable_bars)
    with _backend(settings.backend, settings.scheduler, jobs):
        for dcfg, images, splits in loaded:
            dataset_info = {
                "dataset": dcfg.label,
                "n_images": len(images),
                "n_classes": images.n_classes,
                "skipped_images": len(images.skipped),
                # class folders the loader left out because none of their images could be read
                "dropped_classes": "; ".join(" ".join(f"{d.source} ({d.reason})".split())
                                             for d in getattr(images, "dropped_classes", ())),
            }
            for ecfg in exp.extractors:
                extractor = create_extractor(ecfg.name, **ecfg.params)
                token = getattr(extractor, "content_token", lambda: None)()  # e.g. a weights file's hash
                full: dict = {}  # features of the whole set, for extractors that learn nothing
                for split in splits:
                    cells = []
                    for ccfg, clf in classifiers:
                        cell_id = _cell_id(images.fingerprint, dcfg, ecfg, ccfg, split, settings, token)
                        path = cells_dir / f"{_slug(dcfg.label)}__{_slug(ecfg.label)}__{_slug(ccfg.label)}__{split.id}__{cell_id[:10]}.json"
                        order.append(path.name)
                        old = read_cell(path) if skip_existing else None
                        if old is not None and old.get("status") == "ok" and old.get("cell_id") == cell_id:
                            slots[path.name] = old
                            reused += 1
                            bar.update(1)
                        else:
                            cells.append((ccfg, clf, cell_id, path))
                    if not cells:
                        continue
                    base = {
                        **dataset_info,
                        "extractor": ecfg.label,
                        "extractor_name": ecfg.name,
                        "extractor_params": json.dumps(ecfg.params, sort_keys=True),
                        "family": extractor.spec.family,
                        "weights": extractor.weights_label,
                        "split": split.id,
                        "n_train": len(split.train),
                        "n_test": len(split.test),
                    }
                    try:
                        feats = _features(extractor, images, split, cache, full, jobs, settings.backend, disable_bars)
                        _check_finite(feats, ecfg.label)
                        status = "ok"
                    except WeightsUnavailableError as exc:
                        feats, status = None, f"skipped: {exc}"
                    except (Exception, SystemExit) as exc:  # one broken extractor must not stop the run
                        log.debug("extraction failed", exc_info=True)
                        feats, status = None, f"failed: {type(exc).__name__}: {_one_line(exc)}"
                    for ccfg, clf, cell_id, path in cells:
                        rec = {**base, "classifier": ccfg.label, "classifier_name": ccfg.name,
                               "C_grid": json.dumps(list(ccfg.C)), "cell_id": cell_id, "status": status}
                        if feats is not None:
                            try:
                                rec.update(_classify(clf, ccfg, feats, images, split, settings))
                            except (Exception, SystemExit) as exc:
                                log.debug("classifier failed", exc_info=True)
                                rec["status"] = f"failed: {type(exc).__name__}: {_one_line(exc)}"
                        rec["peak_rss_mb"] = round(peak_rss_mb(), 1)
                        write_cell(path, rec)
                        slots[path.name] = rec
                        computed += 1
                        bar.update(1)
    bar.close()
    records = [slots[c] for c in order]

    run_info = {
        "name": exp.name,
        "experiment": exp.source,
        "config": exp.raw,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "cells": {"total": n_cells, "computed": computed, "reused": reused},
        "cell_ids": [r["cell_id"] for r in records],
        "cell_files": order,
        "n_jobs": effective_n_jobs(jobs),
        "backend": settings.backend,
        "feature_cache": str(cache.root) if cache.root else None,
        **({"feature_cache_problem": cache.problem} if cache.problem else {}),
        **environment_info(),
    }
    write_reports(out_dir, records, run_info)
    return RunResult(out_dir, records, computed, reused)


# -- checks before the first cell --------------------------------------------------------
def _load(dcfg) -> ImageSet:
    """The dataset of a ``[[datasets]]`` table; any failure of its loader is one line naming it."""
    try:
        return load_dataset(dcfg.name, **dcfg.params)
    except FeatbenchError:
        raise
    except (Exception, SystemExit) as exc:  # a plugin loader, or a value of a type the loader did not expect
        log.debug("dataset loader failed", exc_info=True)
        raise DatasetError(f"dataset {dcfg.label!r} ({dcfg.name}) cannot be loaded: "
                           f"{type(exc).__name__}: {_one_line(exc)}") from exc


def available_memory_bytes() -> int | None:
    """Physical memory of this machine (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(exp: Experiment, loaded: list) -> None:
    """Refuse, before anything runs, an extractor whose features of a dataset cannot fit in memory.

    Extractors that know their output dimension from their parameters (``expected_dim()``) are checked:
    the feature matrix is ``n_images × dim`` float32 and is held whole once per dataset.
    """
    memory = available_memory_bytes()
    if memory is None:
        return
    for i, ecfg in enumerate(exp.extractors):
        extractor = create_extractor(ecfg.name, **ecfg.params)
        dim = getattr(extractor, "expected_dim", lambda: None)()
        if not dim:
            continue
        for dcfg, images, _ in loaded:
            need = 4 * int(dim) * len(images)
            if need > memory // 2:
                raise ConfigError(
                    f"{exp.source} [[extractors]] #{i + 1} ({ecfg.label}): {int(dim):,} features per image × "
                    f"{len(images):,} images of {dcfg.label!r} need {need / 2**30:,.1f} GiB as float32, more than "
                    f"half of this machine's {memory / 2**30:,.1f} GiB; lower its size parameters")


def _check_finite(feats: Features, extractor: str) -> None:
    """Non-finite features fail the cell, naming the extractor: they are never replaced in silence."""
    bad = [(name, X) for name, X in (("training", feats.train), ("test", feats.test)) if not np.isfinite(X).all()]
    if bad:
        parts = []
        for name, X in bad:
            rows = int((~np.isfinite(X)).any(axis=1).sum())
            parts.append(f"{int((~np.isfinite(X)).sum()):,} values in {rows:,} of {len(X):,} {name} images")
        raise ValueError(f"extractor {extractor!r} returned non-finite features (NaN or inf): {'; '.join(parts)}")


# -- features -------------------------------------------------------------------------
@dataclass
class Features:
    train: np.ndarray
    test: np.ndarray
    fit_s: float
    extract_ms_per_image: float
    from_cache: bool
    info: dict


def _features(extractor, images: ImageSet, split: Split, cache: FeatureCache, full: dict,
              n_jobs: int, backend: str, disable_bars: bool | None) -> Features:
    if not extractor.spec.fitted:
        if "X" not in full:
            key = feature_key(images.fingerprint, extractor)
            hit = cache.load(key)
            if hit is not None and hit[0].shape[0] == len(images):
                full["X"], meta = hit
                full["cached"] = True
            else:
                t0 = time.perf_counter()
                extractor.fit(images[:0] if len(images) else images)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                X = transform_parallel(extractor, images, n_jobs, backend, disable_bars)
                extract_s = time.perf_counter() - t0
                meta = {"fit_s": fit_s, "extract_s": extract_s, "n": len(images), "dim": X.shape[1],
                        "info": extractor.report_info()}
                cache.save(key, X, meta)
                full["X"], full["cached"] = X, False
            full["meta"] = meta
        X, meta = full["X"], full["meta"]
        return Features(X[split.train], X[split.test], meta["fit_s"],
                        1000 * meta["extract_s"] / max(meta["n"], 1), full["cached"], meta.get("info", {}))

    key = feature_key(images.fingerprint, extractor, split.digest)
    hit = cache.load(key)
    n_train = len(split.train)
    if hit is not None and hit[0].shape[0] == n_train + len(split.test):
        X, meta = hit
        cached = True
    else:
        train, test = images.subset(split.train), images.subset(split.test)
        t0 = time.perf_counter()
        extractor.fit(train, train.labels)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        X = np.concatenate([transform_parallel(extractor, part, n_jobs, backend, disable_bars)
                            for part in (train, test)])
        extract_s = time.perf_counter() - t0
        meta = {"fit_s": fit_s, "extract_s": extract_s, "n": len(X), "dim": X.shape[1],
                "info": extractor.report_info()}
        cache.save(key, X, meta)
        cached = False
    return Features(X[:n_train], X[n_train:], meta["fit_s"], 1000 * meta["extract_s"] / max(meta["n"], 1), cached,
                    meta.get("info", {}))


def _transform_chunk(extractor, images, parent_pid: int) -> np.ndarray:
    if os.getpid() != parent_pid:
        # A worker process per core already: OpenCV's own thread pool would only oversubscribe them.
        import cv2

        cv2.setNumThreads(1)
    return extractor.transform(images)


def transform_parallel(extractor, images, n_jobs: int = -1, backend: str = "loky",
                       disable_bars: bool | None = True) -> np.ndarray:
    """``extractor.transform(images)`` split over workers in chunks; same result as serial.

    The first :data:`PROBE_IMAGES` images are transformed serially and timed; the rest go
    to the workers only when their estimated serial time is at least
    :data:`MIN_PARALLEL_SECONDS` (and there are :data:`MIN_PARALLEL_IMAGES` images or more).
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
    chunks = [c for c in np.array_split(rest, min(len(rest), workers * 4)) if len(c)]
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    parts = parallel(delayed(_transform_chunk)(extractor, take(c), os.getpid()) for c in chunks)
    return np.ascontiguousarray(np.concatenate([head, *tqdm(
        parts, total=len(chunks), desc=f"  extract {type(extractor).__name__}", unit="chunk",
        leave=False, disable=disable_bars)], axis=0), dtype=np.float32)


def _warm_worker() -> int:
    import featbench.extractors  # noqa: F401  (OpenCV, scikit-learn: imported once, before any timing)

    return os.getpid()


@contextmanager
def _backend(name: str, scheduler: str | None, n_jobs: int):
    if name == "dask":
        try:
            from dask.distributed import Client
        except ImportError as exc:
            from featbench.errors import ConfigError

            raise ConfigError(
                "backend 'dask' needs dask.distributed: pip install 'featbench[dask]'"
            ) from exc
        client = Client(scheduler) if scheduler else Client(processes=True)
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


# -- classification ---------------------------------------------------------------------
def _classify(clf, ccfg, feats: Features, images: ImageSet, split: Split, settings) -> dict:
    labels = images.labels
    y_train, y_test = labels[split.train], labels[split.test]
    t0 = time.perf_counter()
    model, best_c = fit_with_c_search(clf, feats.train, y_train, ccfg.C, inner_folds=settings.inner_folds,
                                      random_state=settings.seed, scale=ccfg.scale)
    clf_fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    y_pred = model.predict(feats.test)
    predict_s = time.perf_counter() - t0
    metrics = classification_metrics(y_test, y_pred, images.n_classes)
    empty = int((~feats.train.any(axis=1)).sum() + (~feats.test.any(axis=1)).sum())
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "f1_macro": metrics["f1_macro"],
        "confusion": json.dumps(metrics["confusion"]),
        "class_names": json.dumps(images.class_names),
        "C": best_c,
        "dim": int(feats.train.shape[1]),
        "empty_features": empty,
        "extractor_fit_s": round(feats.fit_s, 4),
        "extract_ms_per_image": round(feats.extract_ms_per_image, 4),
        "images_per_s": round(1000.0 / feats.extract_ms_per_image, 1) if feats.extract_ms_per_image > 0 else None,
        "classifier_fit_s": round(clf_fit_s, 4),
        "predict_ms_per_image": round(1000 * predict_s / max(len(split.test), 1), 5),
        "features_from_cache": feats.from_cache,
        **feats.info,
    }


# -- bookkeeping ----------------------------------------------------------------------------
def _cell_id(fingerprint: str, dcfg, ecfg: ExtractorConfig, ccfg, split: Split, settings,
             token: str | None = None) -> str:
    payload = {
        "featbench": __version__,
        "dataset": [dcfg.name, dcfg.params, fingerprint],
        "extractor": [ecfg.name, ecfg.params] + ([token] if token is not None else []),
        # the default scaling adds nothing, so that records written before ``scale`` existed stay valid
        "classifier": [ccfg.name, list(ccfg.C)] + ([ccfg.scale] if ccfg.scale != "standard" else []),
        "split": split.digest,
        "inner_folds": settings.inner_folds,
        "seed": settings.seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def environment_info() -> dict:
    """Package versions, CPU model and cores, Python, git commit of the working directory."""
    versions = {}
    for pkg in ("featbench", "numpy", "scikit-learn", "scikit-image", "opencv-python-headless",
                "tensorflow", "tensorflow-cpu", "keras", "joblib", "pandas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "git_commit": commit,
        "versions": versions,
    }

