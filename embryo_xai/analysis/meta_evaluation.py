"""Meta-evaluation on the synthetic set: which faithfulness metric agrees with the ground truth?

The ground-truth layer (``embryo_xai.ground_truth``) scores every approach's map on every image by its
ground-truth faithfulness (Spearman of per-structure saliency vs the true importance of the structures).
For each metric, per image, Kendall's tau-b between the ranking of the approaches (the real ones and the
controls) by that metric (signed so that higher is better) and their ranking by ground-truth faithfulness;
the mean over images with a percentile bootstrap CI over images. And whether the metric puts every control
below every real explainer (on the means): a metric that does not fails the simplest sanity check.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from embryo_xai.analysis.bootstrap import resample_counts, resampled_means  # noqa: E402
from embryo_xai.analysis.figures import save  # noqa: E402
from embryo_xai.analysis.kendall import tau_b_rows  # noqa: E402
from embryo_xai.analysis.loading import nanmean  # noqa: E402

#: The ground truth the metrics are compared with (a column of the ground-truth rows).
REFERENCE = "gt_spearman"


@dataclass
class MetaEvaluation:
    """``table``: one row per metric (label, family, mean tau, CI, images, controls_last); ``per_image``:
    (metrics, N) tau per image."""

    table: pd.DataFrame
    per_image: np.ndarray
    level: float


def bootstrap_interval(per_image: np.ndarray, n_resamples: int, seed: int, level: float) -> tuple[np.ndarray, ...]:
    """(mean, low, high) over images of (K, N) values (NaN ignored), percentile bootstrap over images."""
    mean = nanmean(per_image, axis=1)
    if n_resamples <= 0:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    boot = resampled_means(per_image, resample_counts(per_image.shape[1], n_resamples, seed))  # (B, K)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    return mean, low, high


def controls_last(signed_means: np.ndarray, is_control: np.ndarray) -> bool:
    """Whether every control's mean (signed: higher is better) is below every real approach's."""
    controls, real = signed_means[is_control], signed_means[~is_control]
    if not len(controls) or not len(real) or not np.isfinite(signed_means).all():
        return False
    return bool(controls.max() < real.min())


#: fewest approaches an image must have both values for: fewer make a ranking of two, tau +-1 by chance
MIN_APPROACHES = 3


def tau_complete_cases(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) Kendall tau-b of each row of ``x`` and ``y`` (N, A) over the approaches defined in both (an
    undefined metric or ground truth leaves that approach out of that image); NaN with fewer than
    ``MIN_APPROACHES``."""
    both = np.isfinite(x) & np.isfinite(y)
    tau = np.full(len(x), np.nan)
    complete = both.all(1)
    tau[complete] = tau_b_rows(x[complete], y[complete]) if complete.any() else tau[complete]
    for row in np.flatnonzero(~complete & (both.sum(1) >= MIN_APPROACHES)):
        tau[row] = tau_b_rows(x[row, both[row]], y[row, both[row]])[0]
    return tau


def meta_evaluate(signed: np.ndarray, reference: np.ndarray, names: list[str], families: list[str],
                  is_control: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> MetaEvaluation:
    """``signed`` (A, K, N): K metrics of A approaches on N images, signed so higher is better;
    ``reference`` (A, N): ground-truth faithfulness. Per metric: per-image tau-b with the reference over the
    approaches defined in both (NaN where either ranking is constant), its mean and bootstrap CI, and
    `controls_last`."""
    per_image = np.stack([tau_complete_cases(signed[:, k].T, reference.T) for k in range(signed.shape[1])])
    mean, low, high = bootstrap_interval(per_image, n_resamples, seed, level)
    means = nanmean(signed, axis=2)  # (A, K)
    table = pd.DataFrame({
        "metric": names, "family": families, "tau": mean, "ci_low": low, "ci_high": high,
        "images": np.isfinite(per_image).sum(1),
        "controls_last": [controls_last(means[:, k], is_control) for k in range(len(names))],
    })
    return MetaEvaluation(table.sort_values("tau", ascending=False, kind="stable").reset_index(drop=True),
                          per_image, level)


FAMILY_COLOURS = {"mask": "#1f77b4", "highlight": "#ff7f0e", "localisation": "#2ca02c", "other": "#7f7f7f"}


def meta_evaluation_figure(result: MetaEvaluation, stem: Path) -> Path:
    """Horizontal bars: mean tau with the ground truth per metric and its CI, coloured by family; a cross
    marks a metric that does not put every control below every real explainer."""
    table = result.table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.38 * len(table) + 1.4))
    y = np.arange(len(table))
    colours = [FAMILY_COLOURS.get(f, FAMILY_COLOURS["other"]) for f in table["family"]]
    ax.barh(y, table["tau"], color=colours, alpha=0.85)
    err = np.vstack([table["tau"] - table["ci_low"], table["ci_high"] - table["tau"]])
    ax.errorbar(table["tau"], y, xerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=3, lw=1)
    for row, ok in zip(y, table["controls_last"]):
        if not ok:
            ax.plot(0, row, marker="x", color="crimson", ms=9, mew=2)
    ax.set_yticks(y, table["metric"])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Kendall tau with the ground-truth ranking (mean over images)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in FAMILY_COLOURS.values()]
    handles.append(plt.Line2D([], [], marker="x", color="crimson", ls="none", mew=2))
    ax.legend(handles, [*FAMILY_COLOURS, "controls not last"], loc="lower right", fontsize=7)
    ax.set_title("Which metric agrees with the ground truth?")
    fig.tight_layout()
    return save(fig, stem)


def randomisation_figure(curves: pd.DataFrame, stem: Path, threshold: float) -> Path:
    """Median Spearman similarity to the original maps along the cascading randomisation, one line per
    approach (the model-parameter randomisation test of Adebayo et al. 2018)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for approach, curve in curves.groupby("approach", sort=False):
        ax.plot(curve["step"], curve["spearman"], marker="o", ms=3, label=approach)
    ax.axhline(threshold, color="crimson", ls="--", lw=1)
    ax.set_xlabel("layers randomised (top-down, cascading)")
    ax.set_ylabel("median Spearman to original maps")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save(fig, stem)
