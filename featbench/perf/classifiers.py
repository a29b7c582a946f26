"""The classifier stage of ``make bench``: its cells on all cores against the same fits one after another.

``classifier-stage``
    Every classification cell of ``experiments/default.toml`` (datasets × extractors × splits ×
    classifiers, C or k searched by inner cross-validation), run by the runner's own queue
    (:func:`featbench.runner._run_queue`, loky workers, largest cells first) against the same cells run
    sequentially in this one process (:func:`featbench.runner.run_cell` in a loop). Ratio = sequential
    time / parallel time, target ``>= 1.8`` on 2 cores (``>= 0.9 × cores`` elsewhere). The two runs are
    checked to give the same chosen value and the same predictions in every cell. The features come from
    the feature cache when ``make bench`` has filled it (else they are computed first, not timed).

``--quick`` uses the digits dataset only, with the first split.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from joblib import Parallel, delayed, effective_n_jobs

from featbench.perf import Measurement, benchmark

__all__ = ["classifier_jobs"]

_DEFAULT = Path(__file__).resolve().parents[2] / "experiments" / "default.toml"


def classifier_jobs(experiment: str | Path = _DEFAULT, quick: bool = False) -> list:
    """The runner's :class:`~featbench.runner.CellJob` of every classification cell of ``experiment``."""
    from featbench.cache import usable_cache
    from featbench.config import load_experiment
    from featbench.errors import WeightsUnavailableError
    from featbench.evaluation import make_splits
    from featbench.features import split_features
    from featbench.registry import TASKS, create_extractor
    from featbench.runner import CellJob, _load, _task_input

    exp = load_experiment(experiment)
    cache = usable_cache(exp.run.cache_dir)
    tasks = [TASKS.get(t.name)(t.label, t.params, exp.classifiers) for t in exp.tasks if t.name == "classification"]
    jobs = []
    for dcfg in exp.datasets[:1] if quick else exp.datasets:
        images = _load(dcfg)
        splits = make_splits(images.labels, dcfg.protocol, images.official_split, dataset=dcfg.label)
        for ecfg in exp.extractors:
            extractor = create_extractor(ecfg.name, **ecfg.params)
            full: dict = {}
            for index, split in enumerate(splits[:1] if quick else splits):
                try:
                    feats = split_features(extractor, images, split, cache, full, -1, "loky", True)
                except WeightsUnavailableError:
                    continue
                data = _task_input(feats, images, split, index, exp.run)
                for task in tasks:
                    for cell in task.cells():
                        record = {"dataset": dcfg.label, "extractor": ecfg.label, "split": split.id, **cell.fields}
                        jobs.append(CellJob(Path(f"{len(jobs)}.json"), record, task, cell, data))
    return jobs


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@benchmark("classifier-stage")
def classifier_stage(quick: bool = False) -> list[Measurement]:
    from featbench.runner import _run_queue, run_cell

    jobs = classifier_jobs(quick=quick)
    workers = effective_n_jobs(-1)
    Parallel(n_jobs=-1)(delayed(os.getpid)() for _ in range(workers))  # start the pool: not part of the time

    t0 = time.perf_counter()
    sequential = [run_cell(j.task, j.cell, j.data, j.record) for j in jobs]
    t_seq = time.perf_counter() - t0

    parallel: dict = {}
    t_par = _run_queue(jobs, -1, lambda path, rec: parallel.__setitem__(path.name, rec))

    same = sum(1 for j, rec in zip(jobs, sequential)
               if (parallel[j.path.name].get("C"), parallel[j.path.name].get("predictions"))
               == (rec.get("C"), rec.get("predictions")))
    failed = sum(1 for rec in sequential if rec.get("status", "ok") != "ok" or "accuracy" not in rec)
    fit_seq = sum(rec.get("classifier_fit_s", 0.0) for rec in sequential)
    cores = _cores()
    target = 1.8 if cores == 2 else round(0.9 * min(cores, workers), 2)
    note = (f"{len(jobs)} classification cells of experiments/default.toml{' (quick: digits, split 0)' if quick else ''}; "
            f"{workers} loky workers on {cores} cores, largest cells first, one BLAS thread per fit; sequential: "
            f"run_cell in a loop in this process ({fit_seq:.1f} s of it in classifier fits); same chosen value and "
            f"predictions in {same} of {len(jobs)} cells" + (f"; {failed} cells failed" if failed else ""))
    return [Measurement(
        benchmark="classifier-stage", subject="cells on all cores (runner queue, loky)",
        reference="the same cells one after another in one process", value=t_seq / t_par,
        reference_value=1.0, unit="x speed-up", target=f">= {target}" if same == len(jobs) and not failed else ">= inf",
        note=note + f"; {t_par:.1f} s vs {t_seq:.1f} s")]
