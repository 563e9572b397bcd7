"""Bootstrap over images: confidence intervals for Table 1 means and Table 2 average ranks.

The paper scored 100 images and gave no uncertainty. Resampling images (the same resample
for every approach, since they are scored on the same frames) tells which differences
survive. Each resample is a vector of image counts, so all resampled means come from one
matrix product instead of a loop over resamples.

Ranks here are mid-ranks (tied approaches share the mean of their ranks) and a resample whose
best average rank is shared counts 1/k toward each of the k approaches' P(first): unlike
Table 2's order-of-appearance rule, nothing then depends on the order approaches are listed in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embryo_xai.analysis.loading import nanmean
from embryo_xai.analysis.ranking import average_ranks
from embryo_xai.analysis.spec import METRICS, Approach, metric_label


@dataclass
class BootstrapResult:
    means: pd.DataFrame  # approach, metric, mean, low, high
    ranks: pd.DataFrame  # group, approach, average_rank, low, high, p_first
    n_resamples: int
    level: float


def resample_counts(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, N) how many times each image is drawn in each resample (N draws with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    offsets = (np.arange(n_resamples) * n_images)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images)


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Means of `values` (..., N) under each resample's image counts (B, N) -> (B, ...); NaN ignored."""
    defined = np.isfinite(values)
    totals = np.where(defined, values, 0.0) @ counts.T
    weights = defined.astype(float) @ counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / weights
    return np.moveaxis(means, -1, 0)


def p_first(per_resample: np.ndarray) -> np.ndarray:
    """(B, A) average ranks per resample -> (A,) share of resamples each approach is best in;
    the k approaches tied for best in a resample get 1/k each."""
    # Mid-rank averages are sums of halves over the same divisor: ties are exact, the tolerance is a guard.
    best = np.isclose(per_resample, per_resample.min(axis=1, keepdims=True), rtol=0, atol=1e-9)
    return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)


def bootstrap(
    values: np.ndarray,
    approaches: list[Approach],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: tuple[str, ...] = METRICS,
) -> BootstrapResult:
    """Percentile CIs of every approach × metric mean and every group average (mid-)rank.

    `values` is (A, len(metrics), N). `p_first` is the fraction of resamples in which the
    approach has the best (lowest) average rank of its group, a tie for best split equally.
    `average_rank` is the mid-rank of the point means, so it may differ from Table 2 (ties by
    appearance) where means tie.
    """
    counts = resample_counts(values.shape[2], n_resamples, seed)
    boot = resampled_means(values, counts)  # (B, A, M)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():  # a metric an approach never defined has an all-NaN interval
        warnings.simplefilter("ignore", category=RuntimeWarning)
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    labels = [a.label for a in approaches]
    point = nanmean(values, axis=2)
    means = pd.DataFrame(
        {
            "approach": np.repeat(labels, len(metrics)),
            "metric": np.tile([metric_label(m) for m in metrics], len(labels)),
            "mean": point.ravel(),
            "low": low.ravel(),
            "high": high.ravel(),
        }
    )
    point_ranks = average_ranks(point, metrics, ties="average")
    frames = []
    for group, per_resample in average_ranks(boot, metrics, ties="average").items():  # (B, A)
        first = p_first(per_resample)
        r_low, r_high = np.percentile(per_resample, [tail, 100 - tail], axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "group": group,
                    "approach": labels,
                    "average_rank": point_ranks[group],
                    "low": r_low,
                    "high": r_high,
                    "p_first": first,
                }
            )
        )
    return BootstrapResult(
        means=means, ranks=pd.concat(frames, ignore_index=True), n_resamples=n_resamples, level=level
    )
