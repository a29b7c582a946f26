"""The task contract: a question asked of the features of one (dataset, extractor, split).

A task is registered by name (:func:`featbench.register_task`, or the entry-point group
``featbench.tasks``) and configured by a ``[[tasks]]`` table of the experiment file. The runner knows no
task by name: for every (dataset, extractor, split) it asks each task for its :meth:`Task.cells`,
skips the finished ones, computes the features once, and calls :meth:`Task.run` for the others. A task
owns the records it writes (its metrics) and its section of the report (:meth:`Task.report`).

Example
-------
.. code-block:: python

    from featbench import register_task
    from featbench.tasks import Task

    @register_task("centroid")
    class NearestCentroid(Task):
        \"\"\"Accuracy of the nearest class mean (a probe with no parameter to search).\"\"\"
        description = "nearest class mean"
        metrics = ("accuracy",)

        def run(self, cell, data):
            means = np.stack([data.train[data.y_train == c].mean(0) for c in range(data.n_classes)])
            pred = np.argmin(((data.test[:, None] - means[None]) ** 2).sum(-1), axis=1)
            return {"accuracy": float((pred == data.y_test).mean())}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

__all__ = ["Task", "Cell", "TaskInput", "ReportContext", "FeatureRequest"]


@dataclass(frozen=True)
class Cell:
    """One record a task will write for a (dataset, extractor, split).

    Attributes
    ----------
    key : str
        Distinguishes the task's cells of one (dataset, extractor, split); part of the cell's file name
        (the classifier label for classification).
    identity : dict
        What, beyond dataset, extractor, split and run settings, makes the record what it is; hashed into
        the cell id (change it and the cell is recomputed).
    fields : dict
        Record fields known before anything is computed (e.g. the classifier's label and grid).
    """

    key: str
    identity: dict
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureRequest:
    """Features a task needs beyond the split's training and test features (:meth:`Task.feature_requests`).

    Attributes
    ----------
    name : str
        Key of the features in :attr:`TaskInput.extra`.
    positions : ndarray of int
        Positions in the dataset of the images to transform, in the order of the rows returned.
    fit_positions : ndarray of int, optional
        The images the extractor is fitted on (an extractor that learns nothing ignores it); default: the
        split's training images, i.e. the same fitted extractor as the split's own features.
    view : dict, optional
        A change made to each image before extraction, handed to :meth:`Task.view_image`; JSON-serialisable,
        it enters the feature cache key (``None``: the images as they are).
    """

    name: str
    positions: np.ndarray
    fit_positions: np.ndarray | None = None
    view: dict | None = None


@dataclass
class TaskInput:
    """What a task gets for one (dataset, extractor, split): features and labels, nothing else.

    ``train``/``test`` are float32 ``(n, d)``; ``train_positions``/``test_positions`` are the images'
    positions in the dataset (for pictures drawn after the run).
    """

    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    n_classes: int
    class_names: list[str]
    split_id: str
    split_index: int
    train_positions: np.ndarray
    test_positions: np.ndarray
    seed: int = 0
    inner_folds: int = 3
    #: The features this task asked for with :meth:`Task.feature_requests`, by request name.
    extra: dict = field(default_factory=dict)
    #: Labels of every image of the dataset, by position (e.g. of an extra request's images).
    labels: np.ndarray | None = None


@dataclass
class ReportContext:
    """Where a task's report section may write plots, and the run's information."""

    out_dir: Any
    run_info: dict
    #: Every row of the run (all datasets and tasks), e.g. to put another task's metric beside one's own.
    results: pd.DataFrame | None = None


class Task:
    """Base class of evaluation tasks.

    Subclasses set ``description`` and ``metrics`` (record keys; the first is the headline, used to sort
    and to compare rows), implement :meth:`run`, and may override :meth:`check_params`, :meth:`cells`,
    :meth:`report` and :meth:`after_run`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Metric keys of the records, headline first.
    metrics: ClassVar[tuple[str, ...]] = ()
    #: True when the task reads the experiment's ``[[classifiers]]``.
    uses_classifiers: ClassVar[bool] = False

    def __init__(self, label: str, params: dict, classifiers: Sequence[Any] = ()) -> None:
        self.label = label
        self.params = dict(params)
        self.classifiers = list(classifiers)

    @classmethod
    def check_rows(cls, params: dict, rows: Sequence[tuple[str, str]]) -> None:
        """Check, before anything runs, the parameters that name extractor rows (a baseline) against the rows
        the task runs on: ``(label, extractor name)`` pairs. ``params`` are the table's as written (valid:
        :meth:`check_params` accepted them), without defaults. Raise :class:`~featbench.errors.ConfigError`
        naming the value and the accepted rows. Nothing to check by default."""

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """Validate the ``[[tasks]]`` table's parameters (without ``name``/``label``); return them with
        defaults filled in. Raise :class:`~featbench.errors.ConfigError` naming the key and what is accepted."""
        from featbench.errors import ConfigError

        if params:
            raise ConfigError(f"task {cls.name!r} takes no parameters, got {', '.join(sorted(params))}")
        return {}

    def cells(self) -> list[Cell]:
        """The records this task writes for each (dataset, extractor, split); one by default."""
        return [Cell(key=self.label, identity={"task": [self.name, self.params]}, fields={})]

    def run(self, cell: Cell, data: TaskInput) -> dict:
        """The metrics of ``cell`` computed from ``data`` (a dict of JSON-serialisable values)."""
        raise NotImplementedError

    def feature_requests(self, train: np.ndarray, test: np.ndarray, labels: np.ndarray,
                         seed: int) -> list[FeatureRequest]:
        """Features this task needs besides the split's own, given the split's training and test positions,
        the labels of every image and the run's seed; none by default.

        The feature stage computes (or loads from its cache) each request once per (dataset, extractor,
        split) and hands them to :meth:`run` in ``data.extra``: e.g. corrupted copies of the test images, or
        the features of an extractor fitted on a few training images only.
        """
        return []

    def view_image(self, image: np.ndarray, view: dict, seed: int) -> np.ndarray:
        """``image`` changed as a request's ``view`` says (``seed`` is fixed per image and view)."""
        raise NotImplementedError(f"task {self.name!r} asked for a view but does not implement view_image")

    def reusable(self, record: dict) -> bool:
        """Whether a finished record (same cell id) can be reused as it is; False recomputes it."""
        return True

    @classmethod
    def report(cls, dataset: str, results: pd.DataFrame, ctx: ReportContext) -> list[str]:
        """Markdown lines of this task's section for one dataset; ``results`` are its rows (all splits).

        The default: mean ± standard deviation over the splits of every metric in ``metrics`` per row,
        and the rows that were not measured.
        """
        keys = ["extractor", "weights", "classifier"]
        metrics = [m for m in cls.metrics if m in results.columns]
        ok = results[results["status"] == "ok"]
        lines = ["| " + " | ".join(["extractor", "weights", "classifier", *metrics, "splits"]) + " |",
                 "|" + "|".join("---" for _ in range(len(metrics) + 4)) + "|"]
        for key, g in ok.groupby(keys, sort=False, dropna=False):
            cells = []
            for m in metrics:
                v = pd.to_numeric(g[m], errors="coerce")
                cells.append(f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2g}")
            lines.append("| " + " | ".join([f"`{key[0]}`", str(key[1] or ""), str(key[2] or ""), *cells,
                                             str(len(g))]) + " |")
        bad = results[results["status"] != "ok"]
        if not bad.empty:
            lines += ["", "Not measured:", ""]
            lines += [f"- `{r['extractor']}` ({r['split']}): {r['status']}" for _, r in bad.iterrows()]
        return lines

    def after_run(self, out_dir: Any, records: list[dict], datasets: dict) -> None:
        """Called once at the end of a run with every record of this task and the datasets by label
        (``ImageSet``), e.g. to draw pictures of images; the report links what it writes."""
