"""Classification metrics (and, for old imports, :func:`featbench._memory.peak_rss_mb`)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from featbench._memory import peak_rss_mb

__all__ = ["classification_metrics", "peak_rss_mb"]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro F1 and the confusion matrix (rows = true class)."""
    labels = np.arange(n_classes)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
