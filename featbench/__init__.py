"""featbench: classical image features against deep embeddings, under one classifier harness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featbench.registry import (
    create_extractor,
    list_classifiers,
    list_datasets,
    list_extractors,
    list_tasks,
    register_classifier,
    register_dataset,
    register_extractor,
    register_task,
)
from featbench.version import __version__

__all__ = [
    "__version__",
    "run",
    "compare",
    "register_extractor",
    "register_dataset",
    "register_classifier",
    "register_task",
    "list_tasks",
    "create_extractor",
    "list_extractors",
    "list_datasets",
    "list_classifiers",
    "load_dataset",
]

if TYPE_CHECKING:
    from featbench.comparison import compare
    from featbench.datasets import load_dataset
    from featbench.runner import run


def __getattr__(name: str) -> Any:
    # run, compare and load_dataset pull in scikit-learn, OpenCV and pandas: import them on first use.
    if name == "compare":
        from featbench.comparison import compare

        return compare
    if name == "run":
        from featbench.runner import run

        return run
    if name == "load_dataset":
        from featbench.datasets import load_dataset

        return load_dataset
    raise AttributeError(f"module 'featbench' has no attribute {name!r}")
