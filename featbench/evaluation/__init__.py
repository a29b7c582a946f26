"""Evaluation: splits, metrics, memory."""

from featbench.evaluation.metrics import classification_metrics, peak_rss_mb
from featbench.evaluation.splits import Protocol, Split, make_splits

__all__ = ["Protocol", "Split", "make_splits", "classification_metrics", "peak_rss_mb"]
