"""Is the benchmark's ranking reliable? Krippendorff's alpha and the critical test size (issue 15.2).

Gomez et al. (2023, "Enhancing post-hoc explanation benchmark reliability") treat each test
image as a rater that ranks the approaches. Per metric:

- **Krippendorff's alpha, ordinal** (Krippendorff 2011, "Computing Krippendorff's
  Alpha-Reliability"): the units are the approaches, the raters the images, a rating the
  approach's rank on that image (1 = best, ties share their mid-rank, a NaN value is a missing
  rating and the others are ranked among themselves). Alpha = 1 when every image ranks the
  approaches alike, 0 when the images agree no more than chance. It is computed from the
  coincidence matrix; each rater only adds its one-hot ratings to per-unit value counts, so a
  bootstrap over images is one matrix product of resample counts with those one-hots. In a
  resample, the copies of an image are one rater counted several times, not raters that agree
  with each other (`alpha_from_counts`): otherwise every resample's alpha is biased upwards.
- **Critical test size**: the smallest number n of images at which the best approach (best mean
  over every image, direction-aware) comes first, by its mean over the n images, with
  probability >= `target` (95 %). Estimated by drawing n images with replacement from the study's
  images (so they stand for the population; n may exceed the images there are) on a grid of n;
  see `first_probability` and `critical_size`.

Everything is numpy, vectorised over raters and resamples, and seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embryo_xai.analysis.bootstrap import resample_counts, resampled_means
from embryo_xai.analysis.loading import nanmean
from embryo_xai.analysis.ranking import ranks
from embryo_xai.analysis.spec import METRICS, metric_label, signed_for_higher_better

#: The paper's test size (Gomez, Fréour, Mouchère 2022): always on the grid of n.
PAPER_IMAGES = 100
#: Krippendorff's (2004) guidance: alpha >= 0.8 reliable, >= 0.667 tentative conclusions only.
RELIABLE_ALPHA = 0.8
TENTATIVE_ALPHA = 0.667


@dataclass
class ReliabilityResult:
    table: pd.DataFrame  # metric, alpha, ci_low, ci_high, n_images, best, p_first (at N), critical_n, max_n
    curve: pd.DataFrame  # metric, n, p_first: P(best approach first) per test size
    n_resamples: int
    level: float  # of alpha's interval
    target: float  # P(first) that defines the critical size


def image_ranks(values: np.ndarray, metrics: Sequence[str] = METRICS) -> np.ndarray:
    """(A, M, N) values -> (M, N, A) rank of each approach on each image, 1 = best, mid-ranks for ties,
    NaN where the value is NaN (the other approaches are ranked among themselves)."""
    per_image = np.transpose(values, (2, 0, 1))  # (N, A, M), the layout `ranks` compares over
    # `ranks` puts NaN last; for a defined value that equals its rank among the defined ones.
    ranked = ranks(per_image, tuple(metrics), ties="average")
    ranked = np.where(np.isnan(per_image), np.nan, ranked)
    return np.transpose(ranked, (2, 0, 1))


def _one_hot(ratings: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """(..., R, U) ratings -> (..., R, U, V) one-hot over the sorted `domain`; a NaN rating is all zeros."""
    codes = np.searchsorted(domain, np.where(np.isnan(ratings), domain[0], ratings))
    return ((codes[..., None] == np.arange(len(domain))) & ~np.isnan(ratings)[..., None]).astype(float)


def alpha_from_counts(counts: np.ndarray, squares: np.ndarray | None = None) -> np.ndarray:
    """Ordinal Krippendorff's alpha from value counts (..., U, V): how many raters gave unit u the
    v-th smallest value. Batched over the leading axes; NaN where alpha is undefined (one value only).

    Coincidences: o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1) over units with m_u >= 2 ratings.
    Ordinal distance: delta_ck = sum_{g=c..k} n_g - (n_c + n_k) / 2 = mid_k - mid_c with
    mid_g = cumsum(n)_g - n_g / 2. alpha = 1 - (n - 1) sum o delta^2 / sum n_c n_k delta^2.

    Weighted raters (a bootstrap resample: rater i drawn w_i times): `squares` = sum_i w_i^2 one-hot_i.
    Two copies of one image always agree, so pairs of copies of a rating are left out: o_ck =
    sum_u (n_uc n_uk - [c = k] squares_uc) m_u / (m_u^2 - s_u) with s_u = sum_c squares_uc (each unit's
    m_u values share the mean over its pairs of distinct raters), and the n (n - 1) pairs of the
    expected disagreement become n^2 - sum_u s_u. With every w_i in {0, 1} (squares = counts) this is
    the formula above, and doubling every w_i leaves alpha unchanged; counting copies as raters would
    add about (1 - alpha) / N to alpha in every resample.
    """
    counts = np.asarray(counts, dtype=float)
    squares = counts if squares is None else np.asarray(squares, dtype=float)
    m_u = counts.sum(axis=-1)
    pairs = m_u**2 - squares.sum(axis=-1)  # ordered pairs of ratings by distinct raters
    # A unit rated by one rater only cannot be paired: it drops out of every sum.
    pairable = pairs > 0
    weight = np.divide(m_u, pairs, out=np.zeros_like(m_u), where=pairable)
    weighted = counts * weight[..., None]
    coincidence = np.swapaxes(weighted, -1, -2) @ counts  # (..., V, V)
    diagonal = np.einsum("...vv->...v", coincidence)  # a writable view
    diagonal -= (squares * weight[..., None]).sum(axis=-2)
    n_c = coincidence.sum(axis=-1)
    n = n_c.sum(axis=-1)
    distinct_pairs = n**2 - np.where(pairable, squares.sum(axis=-1), 0.0).sum(axis=-1)  # n (n - 1) unweighted
    mid = np.cumsum(n_c, axis=-1) - n_c / 2
    delta2 = (mid[..., :, None] - mid[..., None, :]) ** 2
    observed = (coincidence * delta2).sum(axis=(-2, -1))
    expected = (n_c[..., :, None] * n_c[..., None, :] * delta2).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - distinct_pairs / n * observed / expected
    return np.where(expected > 0, alpha, np.nan)


def ordinal_alpha(ratings: np.ndarray) -> float:
    """Ordinal Krippendorff's alpha of a (raters, units) matrix of ordinal values, NaN = missing."""
    ratings = np.asarray(ratings, dtype=float)
    domain = np.unique(ratings[np.isfinite(ratings)])
    if len(domain) == 0:
        return float("nan")
    return float(alpha_from_counts(_one_hot(ratings, domain).sum(axis=-3)))


def rank_alpha(
    values: np.ndarray, metrics: Sequence[str] = METRICS, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per metric: ordinal alpha of the images' rankings of the approaches and its percentile bootstrap
    interval over images, each (M,). `values` is (A, M, N)."""
    n_approaches, _, n_images = values.shape
    # Mid-ranks are multiples of 1/2 in [1, A]: one domain for every metric; an unused value adds nothing.
    domain = np.arange(2, 2 * n_approaches + 1) / 2.0
    hot = _one_hot(image_ranks(values, metrics), domain)  # (M, N, A, V)
    n_metrics, unit_values = hot.shape[0], hot.shape[2:]
    flat = np.moveaxis(hot, 1, 0).reshape(n_images, -1)  # (N, M*A*V): one BLAS product below
    alpha = alpha_from_counts(flat.sum(axis=0).reshape(n_metrics, *unit_values))
    counts = resample_counts(n_images, n_resamples, seed).astype(float)  # (B, N): each image's weight
    # Rows 0..B-1: value counts per resample; rows B..2B-1: the same with squared weights (copies).
    both = (np.concatenate([counts, counts**2]) @ flat).reshape(2, n_resamples, n_metrics, *unit_values)
    boot = alpha_from_counts(both[0], both[1]).T  # (M, B)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():  # a metric without two distinct ranks has no alpha at all
        warnings.simplefilter("ignore", category=RuntimeWarning)
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=1)
    return alpha, low, high


def size_grid(n_images: int, factor: float = 4.0, sizes: Sequence[int] | None = None) -> np.ndarray:
    """Test sizes to try: 5, 10, 15, 20, 30, 50, 75, 100, 150, … (1-1.5-2-3-5-7.5 steps) up to
    max(`factor` × N, 100), plus N itself and the top. `sizes` replaces the series (N is still added)."""
    top = int(max(factor * n_images, PAPER_IMAGES))
    if sizes is None:
        steps = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
        series = [m * 10**k for k in range(1, len(str(top)) + 1) for m in steps]
        sizes = [5, *(int(s) for s in series if s <= top), top]
    return np.unique(np.array([*sizes, n_images], dtype=int))


def first_probability(
    values: np.ndarray, metrics: Sequence[str], sizes: Sequence[int], n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(best (M,), p (M, S)): the approach with the best mean over all images per metric, and per size
    n the share of resamples of n images (with replacement) in which its mean is the best.

    The resamples are nested (size n takes the first n draws of each row of one draw matrix), so
    the curve over n moves smoothly instead of jumping with fresh noise at every n. A tie for first
    counts 1/k for each of the k tied approaches, as in `bootstrap.p_first`; an approach whose
    metric is undefined on every drawn image never comes first.
    """
    n_images = values.shape[2]
    signs = np.array([signed_for_higher_better(m) for m in metrics])
    signed = values * signs[None, :, None]  # larger is better for every metric
    point = nanmean(signed, axis=2)  # (A, M)
    best = np.argmax(np.where(np.isnan(point), -np.inf, point), axis=0)  # ties: the first listed
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, int(max(sizes))))
    offsets = (np.arange(n_resamples) * n_images)[:, None]
    columns = np.arange(len(metrics))
    p = np.empty((len(metrics), len(sizes)))
    for s, n in enumerate(sizes):
        counts = np.bincount((draws[:, :n] + offsets).ravel(), minlength=n_resamples * n_images)
        means = resampled_means(signed, counts.reshape(n_resamples, n_images))  # (B, A, M)
        means = np.where(np.isnan(means), -np.inf, means)
        # Equal sums of different values may differ in the last bit: a relative tolerance, not ==.
        top = np.isclose(means, means.max(axis=1, keepdims=True), rtol=1e-12, atol=1e-12)
        share = top / top.sum(axis=1, keepdims=True)
        p[:, s] = share[:, best, columns].mean(axis=0)
    return best, p


def critical_size(sizes: Sequence[int], p: np.ndarray, target: float = 0.95) -> np.ndarray:
    """Per row of `p` (..., S): the smallest size from which P(first) stays >= `target` at every larger
    size of the grid (a Monte-Carlo dip below it further up does not count as reached); NaN if never."""
    sizes = np.asarray(sizes, dtype=float)
    above = p >= target
    # Reversed cumulative AND: True at s when s and every larger size reach the target.
    stays = np.flip(np.logical_and.accumulate(np.flip(above, axis=-1), axis=-1), axis=-1)
    first = np.argmax(stays, axis=-1)
    return np.where(stays.any(axis=-1), sizes[first], np.nan)


def reliability(
    values: np.ndarray,
    labels: Sequence[str],
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    target: float = 0.95,
    sizes: Sequence[int] | None = None,
    factor: float = 4.0,
) -> ReliabilityResult:
    """Alpha with its interval and the critical test size per metric of the cube `values` (A, M, N).

    `labels` name the approaches (A); `sizes` the test sizes tried (default `size_grid`, up to
    max(`factor` × N, 100)). `n_images` counts the images that rank at least two approaches on the
    metric (the raters alpha pairs); the sizes count images drawn from all N, as one would score them.
    """
    metrics = tuple(metrics)
    n_images = values.shape[2]
    alpha, low, high = rank_alpha(values, metrics, n_resamples, seed, level)
    grid = size_grid(n_images, factor, sizes)
    # A stream independent of alpha's resamples, still fixed by `seed`.
    size_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    best, p = first_probability(values, metrics, grid, n_resamples, size_seed)
    critical = critical_size(grid, p, target)
    names = [metric_label(m) for m in metrics]
    table = pd.DataFrame(
        {
            "metric": names,
            "alpha": alpha,
            "ci_low": low,
            "ci_high": high,
            "n_images": (np.isfinite(values).sum(axis=0) >= 2).sum(axis=1),
            "best": [labels[b] for b in best],
            "p_first": p[:, int(np.flatnonzero(grid == n_images)[0])],
            "critical_n": pd.array([None if np.isnan(c) else int(c) for c in critical], dtype="Int64"),
            "max_n": int(grid[-1]),
        }
    )
    curve = pd.DataFrame({"metric": np.repeat(names, len(grid)), "n": np.tile(grid, len(names)), "p_first": p.ravel()})
    return ReliabilityResult(table=table, curve=curve, n_resamples=n_resamples, level=level, target=target)


def critical_text(table: pd.DataFrame) -> list[str]:
    """critical_n as the report prints it: the size, or "> max_n" where the grid never reached the target."""
    return [f"> {top}" if pd.isna(n) else str(int(n)) for n, top in zip(table["critical_n"], table["max_n"])]


def reliability_figure(result: ReliabilityResult, stem: Path) -> Path:
    """Left: alpha with its bootstrap interval per metric; right: P(best approach first) against the
    number of images, the target and the paper's 100 marked. Saved as PNG and SVG."""
    from embryo_xai.analysis import figures  # matplotlib (Agg) only when a figure is drawn

    plt = figures.plt
    table = result.table
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 0.35 * len(table) + 3.2), width_ratios=(1, 1.4))
    y = np.arange(len(table))
    alpha = table["alpha"].to_numpy(dtype=float)
    # The point can lie outside a skewed bootstrap's interval: no negative bar.
    errors = [np.clip(alpha - table["ci_low"], 0, None), np.clip(table["ci_high"] - alpha, 0, None)]
    left.errorbar(alpha, y, xerr=errors, fmt="o", color="tab:blue", ecolor="gray", capsize=3)
    for x, style in ((RELIABLE_ALPHA, "--"), (TENTATIVE_ALPHA, ":"), (0.0, "-")):
        left.axvline(x, color="black", linestyle=style, linewidth=0.8, alpha=0.6)
    left.set_yticks(y, table["metric"])
    left.invert_yaxis()
    left.set_xlabel("Krippendorff's alpha (ordinal)")
    left.set_title(f"Agreement of the images ({int(result.level * 100)}% CI)")
    left.grid(axis="x", alpha=0.3)
    for name, part in result.curve.groupby("metric", sort=False):
        right.plot(part["n"], part["p_first"], marker="o", markersize=3, label=name,
                   color=figures.METRIC_COLORS.get(name))
    right.axhline(result.target, color="black", linestyle="--", linewidth=0.8)
    right.axvline(PAPER_IMAGES, color="gray", linestyle=":", linewidth=0.8)
    right.set_xscale("log")
    top = result.curve["n"].max()
    ticks = [t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top]
    right.set_xticks(ticks, [str(t) for t in ticks])
    right.minorticks_off()
    right.set_ylim(0, 1.02)
    right.set_xlabel("test images n (resampled)")
    right.set_ylabel("P(best approach first)")
    right.set_title("Critical test size")
    right.grid(alpha=0.3)
    right.legend(title="metric", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return figures.save(fig, stem)
