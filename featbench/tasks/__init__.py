"""Evaluation tasks: the questions asked of the features (classification, retrieval, ...).

Each task is one module; see :class:`featbench.tasks.base.Task` for the contract and
``featbench list tasks`` for what is registered.
"""

from featbench.tasks.base import Cell, FeatureRequest, ReportContext, Task, TaskInput

__all__ = ["Task", "Cell", "TaskInput", "ReportContext", "FeatureRequest"]
