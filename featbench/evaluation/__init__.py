"""Evaluation: splits, metrics, retrieval metrics, memory."""

from featbench.evaluation.metrics import classification_metrics, peak_rss_mb
from featbench.evaluation.retrieval import RetrievalResult, retrieval_scores
from featbench.evaluation.significance import (
    Comparison,
    compare_with_best,
    corrected_resampled_ttest,
    mcnemar_exact,
)
from featbench.evaluation.splits import Protocol, Split, make_splits

__all__ = ["Protocol", "Split", "make_splits", "classification_metrics", "peak_rss_mb",
           "RetrievalResult", "retrieval_scores"]
__all__ += ["Comparison", "compare_with_best", "corrected_resampled_ttest", "mcnemar_exact"]
