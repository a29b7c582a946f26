"""Run an experiment: the loops dataset → splits → extractor → tasks, resumable, with progress.

The runner knows no task by name. For each (dataset, extractor, split) it asks every task of the
experiment for its cells (:meth:`featbench.tasks.Task.cells`: one per classifier for classification),
reuses the finished ones, gets the features from the feature stage (:mod:`featbench.features`, cached on
disk) only when a cell needs them, and lets each task compute its records. Each cell's record is written
to ``<out>/cells/`` atomically as soon as it finishes (:mod:`featbench.records`). Starting the same run
again reuses every finished cell (``skip_existing``, the default) and recomputes only the missing ones and
those that had failed or been skipped.
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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from tqdm.auto import tqdm

from featbench._memory import PeakMemory
from featbench._threads import one_thread
from featbench.cache import usable_cache
from featbench.classifiers import take_fit_spans
from featbench.config import Experiment, ExtractorConfig, load_experiment
from featbench.datasets import ImageSet, load_dataset
from featbench.errors import ConfigError, DatasetError, FeatbenchError, WeightsUnavailableError
from featbench.evaluation import Split, make_splits
from featbench.features import Features, check_finite, parallel_backend, request_features, split_features
from featbench.records import check_output_dir, read_cell, write_cell
from featbench.registry import TASKS, create_extractor, load_plugin, plugin_paths
from featbench.tasks.base import Cell, TaskInput
from featbench.version import __version__

__all__ = ["run", "RunResult", "run_cell", "CellJob"]

log = logging.getLogger("featbench")


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
    check_memory(exp, loaded)

    tasks = [_make_task(t, exp.classifiers) for t in exp.tasks]
    task_cells = [(task, tcfg, cell) for task, tcfg in zip(tasks, exp.tasks) for cell in task.cells()]
    n_cells = sum(len(s) for _, _, s in loaded) * sum(tcfg.applies_to(e.label) for e in exp.extractors
                                                      for _, tcfg, _ in task_cells)
    slots: dict[str, dict] = {}  # cell file -> record, filled in any order, reported in the experiment's order
    order: list[str] = []
    computed = reused = 0
    bar = tqdm(total=n_cells, desc=f"featbench {exp.name}", unit="cell", disable=disable_bars)
    stages = {"extraction_wall_s": 0.0, "requested_features_wall_s": 0.0, "cells_wall_s": 0.0, "task_s": 0.0,
              "classifier_fit_s": 0.0, "classifier_fit_wall_s": 0.0}

    fit_spans: dict[str, list] = {}  # task label -> the spans of its classifier fits

    def finish(path: Path, rec: dict) -> None:
        nonlocal computed
        fit_spans.setdefault(str(rec.get("task", "")), []).extend(rec.pop("classifier_fit_spans", None) or ())
        write_cell(path, rec)
        slots[path.name] = rec
        computed += 1
        stages["task_s"] += rec.get("task_s") or 0.0
        stages["classifier_fit_s"] += rec.get("classifier_fit_s") or 0.0
        bar.update(1)

    budget = _feature_budget()
    source = Path(exp.source)
    plugins = plugin_paths(exp.plugins, source.parent if source.is_file() else None)
    with parallel_backend(settings.backend, settings.scheduler, jobs):
        for dcfg, images, splits in loaded:
            dataset_info = {
                "dataset": dcfg.label,
                "n_images": len(images),
                "n_classes": images.n_classes,
                "skipped_images": len(images.skipped),
                # class folders the loader left out because none of their images could be read
                "dropped_classes": "; ".join(" ".join(f"{d.source} ({d.reason})".split())
                                             for d in getattr(images, "dropped_classes", ())),
                # the files left out, named (the first SKIPPED_NAMED of them), only where there are any
                **({"skipped_files": _skipped_names(images.skipped)} if images.skipped else {}),
            }
            # The cells of a dataset are queued while its features are computed, then run together on the
            # workers (or the dask cluster): extraction and fitting never compete for the cores, so the
            # timings of both stay honest. The queue is also run when the features it holds grow large.
            queue: list[CellJob] = []
            held = 0
            for ecfg in exp.extractors:
                extractor = create_extractor(ecfg.name, **ecfg.params)
                token = getattr(extractor, "content_token", lambda: None)()  # e.g. a weights file's hash
                full: dict = {}  # features of the whole set, for extractors that learn nothing
                for split_index, split in enumerate(splits):
                    todo = []
                    for task, tcfg, cell in task_cells:
                        if not tcfg.applies_to(ecfg.label):  # [[tasks]] extractors = [...]
                            continue
                        cell_id = _cell_id(images.fingerprint, dcfg, ecfg, cell, split, settings, token)
                        path = cells_dir / (f"{_slug(dcfg.label)}__{_slug(ecfg.label)}__{_slug(cell.key)}__"
                                            f"{split.id}__{cell_id[:10]}.json")
                        order.append(path.name)
                        old = read_cell(path) if skip_existing else None
                        if (old is not None and old.get("status") == "ok" and old.get("cell_id") == cell_id
                                and task.reusable(old)):
                            # what the current experiment names (a task's label) follows the experiment
                            slots[path.name] = {**old, "task": task.label, "task_name": task.name, **cell.fields}
                            reused += 1
                            bar.update(1)
                        else:
                            todo.append((task, cell, cell_id, path))
                    if not todo:
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
                    data = None
                    t0 = time.perf_counter()
                    try:
                        feats = split_features(extractor, images, split, cache, full, jobs, settings.backend,
                                               disable_bars)
                        check_finite(feats, ecfg.label)
                        status = "ok"
                        base.update(_feature_fields(feats))
                        data = _task_input(feats, images, split, split_index, settings)
                    except WeightsUnavailableError as exc:
                        status = f"skipped: {exc}"
                    except (Exception, SystemExit) as exc:  # one broken extractor must not stop the run
                        log.debug("extraction failed", exc_info=True)
                        status = f"failed: {type(exc).__name__}: {_one_line(exc)}"
                    stages["extraction_wall_s"] += time.perf_counter() - t0
                    inputs: dict[str, tuple[TaskInput | None, str, dict]] = {}  # per task label
                    for task, cell, cell_id, path in todo:
                        if task.label not in inputs:
                            inputs[task.label] = (data, status, {}) if data is None else _with_requests(
                                task, data, extractor, images, split, cache, full, jobs, settings.backend,
                                disable_bars, stages)
                        task_data, task_status, fields = inputs[task.label]
                        rec = {**base, **fields, "task": task.label, "task_name": task.name, **cell.fields,
                               "cell_id": cell_id, "status": task_status}
                        if task_data is None:
                            finish(path, rec)
                        else:
                            queue.append(CellJob(path, rec, task, cell, task_data, plugins))
                    for task_data, _, _ in inputs.values():
                        if task_data is not None:
                            held += (task_data.train.nbytes + task_data.test.nbytes
                                     + sum(X.nbytes for X in task_data.extra.values()))
                    if held > budget:
                        stages["cells_wall_s"] += _run_queue(queue, jobs, finish)
                        queue, held = [], 0
            stages["cells_wall_s"] += _run_queue(queue, jobs, finish)
    bar.close()
    stages["classifier_fit_wall_s"] = covered_seconds([s for spans in fit_spans.values() for s in spans])
    # the same, task by task (each task's own fits merged over the workers)
    stages["classifier_fit_wall_s_by_task"] = {task: covered_seconds(spans) for task, spans in fit_spans.items()
                                               if spans}
    records = [slots[c] for c in order]
    for task in tasks:
        try:
            task.after_run(out_dir, [r for r in records if r.get("task") == task.label],
                           {dcfg.label: images for dcfg, images, _ in loaded})
        except Exception:  # a picture that cannot be drawn must not lose the run's records
            log.warning("task %r could not finish its pictures", task.label, exc_info=True)

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
        # wall seconds of the two stages (extraction: features of the cells computed, on the client and its
        # extraction workers; cells: the queued tasks on the workers), the seconds the workers spent in
        # tasks and in classifier fits (summed over cells: more than the wall time when they ran in parallel),
        # and the wall seconds during which at least one worker was fitting a classifier (its C search)
        "stages": {k: ({t: round(x, 4) for t, x in v.items()} if isinstance(v, dict) else round(v, 4))
                   for k, v in stages.items()},
        "backend": settings.backend,
        "feature_cache": str(cache.root) if cache.root else None,
        **({"feature_cache_problem": cache.problem} if cache.problem else {}),
        **environment_info(),
    }
    write_reports(out_dir, records, run_info)
    return RunResult(out_dir, records, computed, reused)


# -- the cells: the unit of parallel and distributed work --------------------------------
@dataclass
class CellJob:
    """A cell waiting for a worker: where its record goes, what is known of it, and its task's input."""

    path: Path
    record: dict
    task: Any
    cell: Cell
    data: TaskInput
    plugins: tuple[str, ...] = ()

    def cost(self) -> float:
        """A guess of the work, to start the largest cells first (classifier fits grow with n × d)."""
        return float(len(self.data.train)) * float(self.data.train.shape[1] + 1) * (1 + len(self.data.test) / 1e4)


def run_cell(task: Any, cell: Cell, data: TaskInput, record: dict, plugins: tuple[str, ...] = ()) -> dict:
    """Run one cell where it lands (this process, a loky worker, a dask worker) and return its record.

    ``plugins`` (absolute paths or module names) are imported first, so that what they register (a
    classifier, a task) is known in a worker process too. A failing task fails its cell only; the record
    gets the task's wall time (``task_s``) and the peak resident memory of the process while it ran
    (``task_peak_rss_mb``, :class:`featbench._memory.PeakMemory`).
    """
    rec = dict(record)
    t0 = time.perf_counter()
    # one BLAS thread wherever the cell runs: the cores go to cells, and a cell's floating-point sums are the
    # same in this process, a loky worker or a dask worker
    with PeakMemory() as mem, one_thread():
        try:
            for spec in plugins:
                load_plugin(spec)
            take_fit_spans()  # left over from an earlier cell that failed in this process
            rec.update(task.run(cell, data))
            rec["classifier_fit_spans"] = take_fit_spans()
        except (Exception, SystemExit) as exc:
            log.debug("task %s failed", getattr(task, "label", task), exc_info=True)
            rec["status"] = f"failed: {type(exc).__name__}: {_one_line(exc)}"
    rec["task_s"] = round(time.perf_counter() - t0, 4)
    rec["task_peak_rss_mb"] = mem.mb
    return rec


#: How many unreadable files a record names (all are counted in ``skipped_images``).
SKIPPED_NAMED = 20


def _skipped_names(skipped: list) -> str:
    names = [" ".join(f"{s.source} ({s.reason})".split()) for s in skipped[:SKIPPED_NAMED]]
    more = len(skipped) - len(names)
    return "; ".join(names) + (f"; and {more} more" if more > 0 else "")


def covered_seconds(spans: list) -> float:
    """Length of the union of ``(start, end)`` intervals: the wall time during which at least one ran."""
    total, end = 0.0, -np.inf
    for a, b in sorted((float(a), float(b)) for a, b in spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


#: How often the cells a lost worker was running are sent out again before they are recorded as failed.
WORKER_LOSS_RETRIES = 2


def _run_queue(queue: list[CellJob], n_jobs: int, finish) -> float:
    """Run the queued cells on the current joblib backend (loky, threading, dask: ``parallel_backend``),
    largest first, and ``finish`` each record as soon as it comes back; the wall seconds it took.

    One code path for every backend: one process (``n_jobs = 1``), local worker processes, a dask
    cluster (whose scheduler itself sends the cells of a lost worker to another). When a local worker
    process dies (killed, out of memory, a crash in native code), the cells it had not returned are sent
    out again, up to :data:`WORKER_LOSS_RETRIES` times, and only then recorded as failed: a lost worker
    costs its cells, not the run.
    """
    if not queue:
        return 0.0
    t0 = time.perf_counter()
    pending = {i: job for i, job in enumerate(sorted(queue, key=lambda j: -j.cost()))}
    for attempt in range(WORKER_LOSS_RETRIES + 1):
        try:
            results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(_run_indexed)(i, job.task, job.cell, job.data, job.record, job.plugins)
                for i, job in list(pending.items()))
            for i, rec in results:
                finish(pending.pop(i).path, rec)
            break
        except Exception as exc:  # a worker lost (TerminatedWorkerError, KilledWorker, ...): the others are kept
            if attempt == WORKER_LOSS_RETRIES or not _worker_lost(exc):
                for job in pending.values():
                    finish(job.path, {**job.record, "status": f"failed: {type(exc).__name__}: {_one_line(exc)}"})
                pending.clear()
                break
            log.warning("a worker was lost (%s): %d cells sent out again", type(exc).__name__, len(pending))
    return time.perf_counter() - t0


def _run_indexed(i: int, task: Any, cell: Cell, data: TaskInput, record: dict,
                 plugins: tuple[str, ...]) -> tuple[int, dict]:
    return i, run_cell(task, cell, data, record, plugins)


def _worker_lost(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"TerminatedWorkerError", "KilledWorker", "BrokenProcessPool", "CommClosedError"})


def _feature_budget() -> int:
    """Bytes of features queued cells may hold before they are run: a quarter of the machine's memory."""
    memory = available_memory_bytes()
    return memory // 4 if memory else 2**31


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


def _make_task(tcfg, classifiers) -> Any:
    task = TASKS.get(tcfg.name)(tcfg.label, tcfg.params, classifiers)
    task.name = tcfg.name  # the registered name (an entry point's class may not set it)
    return task


# -- what every task gets ------------------------------------------------------------------
def _feature_fields(feats: Features) -> dict:
    """Record fields about the features themselves, the same for every task of a (dataset, extractor, split)."""
    return {
        "dim": int(feats.train.shape[1]),
        "empty_features": int((~feats.train.any(axis=1)).sum() + (~feats.test.any(axis=1)).sum()),
        "extractor_fit_s": round(feats.fit_s, 4),
        "extract_ms_per_image": round(feats.extract_ms_per_image, 4),
        "images_per_s": round(1000.0 / feats.extract_ms_per_image, 1) if feats.extract_ms_per_image > 0 else None,
        "features_from_cache": feats.from_cache,
        "extract_peak_rss_mb": feats.peak_rss_mb,
        **feats.info,
    }


def _task_input(feats: Features, images: ImageSet, split: Split, split_index: int, settings) -> TaskInput:
    labels = images.labels
    return TaskInput(train=feats.train, test=feats.test, y_train=labels[split.train], y_test=labels[split.test],
                     n_classes=images.n_classes, class_names=list(images.class_names), split_id=split.id,
                     split_index=split_index, train_positions=np.asarray(split.train),
                     test_positions=np.asarray(split.test), seed=settings.seed, inner_folds=settings.inner_folds)


def _with_requests(task, data: TaskInput, extractor, images: ImageSet, split: Split, cache, full: dict, jobs: int,
                   backend: str, disable_bars, stages: dict) -> tuple[TaskInput | None, str, dict]:
    """``data`` with the features ``task`` requests beyond the split's own (:meth:`Task.feature_requests`), the
    status of its cells, and record fields saying what the requests cost; a failed request fails that task's
    cells only."""
    t0 = time.perf_counter()
    try:
        requests = task.feature_requests(np.asarray(split.train), np.asarray(split.test), images.labels, data.seed)
        if not requests:
            return data, "ok", {}
        extra, fit_s, extract_s, computed = {}, 0.0, 0.0, 0
        for req in requests:
            if req.name in extra:
                raise ValueError(f"task {task.label!r} requested the features {req.name!r} twice")
            X, meta = request_features(extractor, images, split, req, task.view_image, cache, full, jobs, backend,
                                       disable_bars)
            if not np.isfinite(X).all():
                raise ValueError(f"requested features {req.name!r}: {int((~np.isfinite(X)).sum()):,} non-finite "
                                 "values (NaN or inf)")
            extra[req.name] = X
            fit_s += meta["fit_s"]
            extract_s += meta["extract_s"]
            computed += not meta["from_cache"]
        fields = {"requested_features": len(requests), "requested_features_computed": computed,
                  "requested_fit_s": round(fit_s, 4), "requested_extract_s": round(extract_s, 4)}
        return replace(data, extra=extra, labels=images.labels), "ok", fields
    except WeightsUnavailableError as exc:
        return None, f"skipped: {exc}", {}
    except (Exception, SystemExit) as exc:
        log.debug("requested features failed", exc_info=True)
        return None, f"failed: {type(exc).__name__}: {_one_line(exc)}", {}
    finally:
        stages["requested_features_wall_s"] += time.perf_counter() - t0


# -- bookkeeping ----------------------------------------------------------------------------
def _cell_id(fingerprint: str, dcfg, ecfg: ExtractorConfig, cell: Cell, split: Split, settings,
             token: str | None = None) -> str:
    """Hash of everything that makes a record what it is; the task's part is ``cell.identity``."""
    payload = {
        "featbench": __version__,
        "dataset": [dcfg.name, dcfg.params, fingerprint],
        "extractor": [ecfg.name, ecfg.params] + ([token] if token is not None else []),
        "split": split.digest,
        "inner_folds": settings.inner_folds,
        "seed": settings.seed,
        **cell.identity,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def _slug(text: str) -> str:
    # cell file names: as before tasks existed, so that finished cells are found again
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def environment_info() -> dict:
    """Package versions, CPU model and cores, Python, git commit of the working directory."""
    versions = {"featbench": __version__}  # this code's version (an editable install's metadata may be older)
    for pkg in ("numpy", "scikit-learn", "scikit-image", "opencv-python-headless",
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

