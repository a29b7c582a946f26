"""Plots (matplotlib, Agg backend): accuracy against extraction cost; confusion matrices."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from featbench._io import atomic_write  # noqa: E402

__all__ = ["accuracy_vs_time", "confusion_plot"]


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def accuracy_vs_time(summary: pd.DataFrame, title: str, path: Path) -> Path:
    """Mean accuracy (± std) against extraction milliseconds per image (log scale)."""
    ok = summary[summary["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "osD^v<>ph*"
    for i, (clf, g) in enumerate(ok.groupby("classifier", sort=False)):
        ax.errorbar(g["extract_ms_per_image"], g["accuracy_mean"], yerr=g["accuracy_std"], fmt=markers[i % 10],
                    capsize=3, label=clf, alpha=0.85)
    for _, r in ok.drop_duplicates("extractor").iterrows():
        best = ok[ok["extractor"] == r["extractor"]]["accuracy_mean"].max()
        ax.annotate(r["extractor"], (r["extract_ms_per_image"], best), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("extraction time per image (ms, log scale)")
    ax.set_ylabel("test accuracy (mean ± std over splits)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(ok):
        ax.legend(title="classifier", fontsize=8)
    return _save(fig, path)


def confusion_plot(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    """Confusion matrix, rows = true class, normalised per row for colour, counts as text."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1.0 + 0.45 * n))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
