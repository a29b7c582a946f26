"""Plots (matplotlib, Agg backend): accuracy against extraction cost; confusion matrices."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from featbench._io import atomic_write  # noqa: E402

__all__ = ["accuracy_vs_time", "confusion_plot", "retrieval_picture"]


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
    per_extractor = ok.sort_values("accuracy_mean", ascending=False).drop_duplicates(["extractor", "weights"])
    per_extractor = per_extractor[per_extractor["extract_ms_per_image"] > 0]
    if len(per_extractor) > 1:
        from featbench.reporting.answer import pareto_front

        front = per_extractor.loc[pareto_front(per_extractor)]
        ax.plot(front["extract_ms_per_image"], front["accuracy_mean"], drawstyle="steps-post", color="0.4",
                linestyle="--", linewidth=1, zorder=0, label="Pareto front (best classifier)")
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


def _tile(img: np.ndarray, size: int, frame: str, border: int) -> np.ndarray:
    """``img`` fitted into a ``size`` x ``size`` RGB uint8 tile (aspect kept, white padding, nearest pixel) inside a
    ``border``-pixel frame of colour ``frame``. ``img``: grey or RGB(A) on 0-255 (a float image whose values all
    lie in 0-1 is read on that scale); transparent pixels are shown over white."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    h, w = img.shape[:2]
    inner = max(1, size - 2 * border)
    scale = inner / max(h, w)
    nh, nw = max(1, min(inner, round(h * scale))), max(1, min(inner, round(w * scale)))
    rows = np.minimum((np.arange(nh) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(nw) / scale).astype(int), w - 1)
    small = np.asarray(img[rows][:, cols], dtype=np.float64)  # sampled first: a photo is never copied whole
    if img.dtype.kind == "f" and small.size and np.nanmax(small) <= 1.0:
        small = small * 255
    if small.ndim == 3 and small.shape[2] == 4:  # over white
        alpha = small[:, :, 3:] / 255
        small = small[:, :, :3] * alpha + 255 * (1 - alpha)
    small = np.clip(np.nan_to_num(small), 0, 255).astype(np.uint8)
    rgb = np.repeat(small[:, :, None], 3, axis=2) if small.ndim == 2 else small[:, :, :3]
    tile = np.empty((size, size, 3), dtype=np.uint8)
    tile[:] = np.asarray(to_rgb(frame)) * 255
    top, left = (size - inner) // 2, (size - inner) // 2
    tile[top:top + inner, left:left + inner] = 255
    top, left = top + (inner - nh) // 2, left + (inner - nw) // 2
    tile[top:top + nh, left:left + nw] = rgb
    return tile


def retrieval_picture(images, rows: dict, title: str, path: Path, tile: int = 64) -> Path:
    """For each extractor (a row) and each fixed query (a panel), the query and its top gallery images.

    ``rows[extractor] = {"queries": [pos], "query_labels": [c], "top": [[pos]], "top_labels": [[c]]}`` with
    positions into ``images``; a result is framed green when its class is the query's, red otherwise. The images
    are laid out in one mosaic (``tile`` pixels each, a gap between panels), drawn with a single ``imshow``:
    hundreds of small axes would cost seconds per picture.
    """
    names = list(rows)
    first = rows[names[0]]
    n_queries, n_top = len(first["queries"]), len(first["top"][0]) if first["top"] else 0
    gap, panel_gap, border = 4, 14, max(2, tile // 20)
    panel = (n_top + 1) * tile + n_top * gap
    width = n_queries * panel + (n_queries - 1) * panel_gap
    mosaic = np.full((len(names) * (tile + gap) - gap, width, 3), 255, dtype=np.uint8)
    for i, name in enumerate(names):
        r = rows[name]
        y0 = i * (tile + gap)
        for q in range(n_queries):
            cells = [(r["queries"][q], "#1f5fbf")] + [
                (pos, "#2a9d3a" if lab == r["query_labels"][q] else "#d62728")
                for pos, lab in zip(r["top"][q], r["top_labels"][q])]
            for j, (pos, colour) in enumerate(cells):
                x0 = q * (panel + panel_gap) + j * (tile + gap)
                mosaic[y0:y0 + tile, x0:x0 + tile] = _tile(images[int(pos)], tile, colour, border)
    inches = 0.75 / tile  # a tile is drawn 0.75 inch wide, as one small axes each was
    fig = plt.figure(figsize=(mosaic.shape[1] * inches + 1.5, mosaic.shape[0] * inches + 0.6))
    ax = fig.add_axes((1.5 / fig.get_figwidth(), 0.1 / fig.get_figheight(),
                       mosaic.shape[1] * inches / fig.get_figwidth(), mosaic.shape[0] * inches / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([i * (tile + gap) + tile / 2 for i in range(len(names))], names, fontsize=7)
    ax.tick_params(left=False)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def map_grid(maps: dict[str, dict], title: str, path: Path, columns: int = 5) -> Path:
    """A grid of small 2-D scatter plots, one per extractor (``maps``: name → ``{"xy", "labels", "class_names"}``),
    points coloured by class with one colour map for the whole grid."""
    n = len(maps)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.6), squeeze=False)
    names = next(iter(maps.values())).get("class_names", [])
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for ax, (name, m) in zip(axes.flat, maps.items()):
        xy = np.asarray(m["xy"], dtype=float).reshape(-1, 2)
        labels = np.asarray(m["labels"], dtype=int)
        ax.scatter(xy[:, 0], xy[:, 1], c=labels % cmap.N, cmap=cmap, vmin=0, vmax=cmap.N - 1, s=4, linewidths=0)
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if names and len(names) <= 20:
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(i % cmap.N), markersize=4)
                   for i in range(len(names))]
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 10), fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if names else 0, 1, 0.95))
    return _save(fig, path)
