"""The report's figures, each saved as PNG and SVG with labels readable at page width."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from embryo_xai.analysis.spec import METRICS, metric_groups, metric_label  # noqa: E402

plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "savefig.bbox": "tight"})
METRIC_COLORS = dict(zip(map(metric_label, METRICS), plt.get_cmap("tab10").colors))


def save(fig: plt.Figure, stem: Path) -> Path:
    """Write `stem`.png and `stem`.svg, close the figure, return the PNG path."""
    png = stem.with_suffix(".png")
    fig.savefig(png, dpi=150)
    fig.savefig(stem.with_suffix(".svg"))
    plt.close(fig)
    return png


def kendall_heatmap(tau: pd.DataFrame, stem: Path, title: str = "Kendall tau-b between metrics") -> Path:
    """Annotated tau matrix on a diverging scale fixed to [−1, 1] (paper Fig. 3)."""
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    image = ax.imshow(tau.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(tau.columns)), tau.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(tau.index)), tau.index)
    for (i, j), value in np.ndenumerate(tau.to_numpy(dtype=float)):
        text = "–" if np.isnan(value) else f"{value:.2f}"
        ax.text(j, i, text, ha="center", va="center", color="white" if abs(value) > 0.6 else "black", fontsize=10)
    fig.colorbar(image, ax=ax, label="tau-b")
    ax.set_title(title)
    return save(fig, stem)


def embedding_scatter(coords: np.ndarray, metric: np.ndarray, stem: Path, title: str) -> Path:
    """One point per (metric, image), coloured by metric (paper Fig. 4)."""
    fig, ax = plt.subplots(figsize=(6.8, 5.6))
    for key in dict.fromkeys(metric):
        label = metric_label(key)
        chosen = metric == key
        ax.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=14,
            alpha=0.75,
            label=label,
            color=METRIC_COLORS.get(label),
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(title="metric", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return save(fig, stem)


def rank_intervals(ranks: pd.DataFrame, stem: Path, level: float) -> Path:
    """Average rank with its bootstrap interval per approach, one panel per group."""
    groups = [g for g in metric_groups(()) if g in set(ranks["group"])]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        part = ranks[ranks["group"] == group].reset_index(drop=True)
        y = np.arange(len(part))
        ax.errorbar(
            part["average_rank"],
            y,
            # the point's mid-rank can lie outside a short bootstrap's interval: no negative bar
            xerr=[(part["average_rank"] - part["low"]).clip(lower=0),
                  (part["high"] - part["average_rank"]).clip(lower=0)],
            fmt="o",
            color="tab:blue",
            ecolor="gray",
            capsize=3,
        )
        ax.set_yticks(y, part["approach"])
        ax.invert_yaxis()
        ax.set_xlabel("average rank (1 = best)")
        ax.set_title(f"{group} ({int(level * 100)}% CI)")
        ax.grid(axis="x", alpha=0.3)
    return save(fig, stem)


def grouped_bars(table: pd.DataFrame, stem: Path, title: str, ylabel: str, log: bool = False) -> Path:
    """Bars per row (x) grouped by column (series): class distribution, per-stage accuracy."""
    n_bars = len(table) * max(1, len(table.columns))
    fig, ax = plt.subplots(figsize=(float(np.clip(1.0 + 0.12 * n_bars, 8.0, 15.0)), 4.2))
    width = 0.8 / max(1, len(table.columns))
    x = np.arange(len(table))
    for k, column in enumerate(table.columns):
        ax.bar(
            x + (k - (len(table.columns) - 1) / 2) * width,
            table[column].to_numpy(dtype=float),
            width,
            label=str(column),
        )
    ax.set_xticks(x, table.index, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, stem)


def gallery(
    frames: list[np.ndarray | None],
    maps: np.ndarray,
    row_titles: list[str],
    column_titles: list[str],
    stem: Path,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> Path:
    """Rows = frames, columns = the frame then each approach's map over it (paper Fig. 5).

    `maps` is (rows, approaches, H, W) already upsampled to the frame size and min-max
    normalised; a NaN map (approach without a map for that frame) leaves its panel blank.
    A missing frame (no data root) shows the map alone.
    """
    n_rows, n_cols = maps.shape[0], maps.shape[1] + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.95 * n_rows + 0.4), squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if frames[r] is not None:
                ax.imshow(frames[r], cmap="gray", vmin=0, vmax=1)
            if c > 0 and np.isfinite(maps[r, c - 1]).any():
                ax.imshow(maps[r, c - 1], cmap=cmap, vmin=0, vmax=1, alpha=alpha if frames[r] is not None else 1.0)
            if r == 0:
                ax.set_title(column_titles[c], fontsize=10)
        axes[r, 0].set_ylabel(row_titles[r], fontsize=7)
    fig.subplots_adjust(wspace=0.03, hspace=0.08)
    return save(fig, stem)
