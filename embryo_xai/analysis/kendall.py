"""Kendall tau-b between rankings, all pairs at once, and the paper's tau distance (eq. 8–9).

tau-b of x and y equals s(x)·s(y) / sqrt(|s(x)|₀ · |s(y)|₀) where s(x) is the vector of
sign(x_i − x_j) over the pairs i < j: the dot product counts concordant minus discordant
pairs (a pair tied in either vector contributes 0) and |s|₀, the number of untied pairs,
is P + Q + (ties only in the other vector). So the whole (n × n) tau matrix is one
matrix product — 600 points of 9 approaches is a (600 × 36) @ (36 × 600) product.

Long vectors (a 56×56 map has 4.9M pixel pairs) use `tau_b_rows` instead: Knight's
O(d log d) algorithm, vectorised over the rows of a batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from embryo_xai.analysis.spec import metric_label, signed_for_higher_better

TAU_FLOOR = -0.999  # paper §4: tau = −1 is replaced by −0.999 so the distance stays finite


def pair_signs(points: np.ndarray) -> np.ndarray:
    """sign(x_i − x_j) for every pair i < j of each row of `points` (n, d) -> (n, d(d−1)/2).

    A NaN entry (undefined metric value) makes its pairs ties: it carries no order.
    """
    first, second = np.triu_indices(points.shape[1], k=1)
    signs = np.sign(points[:, first] - points[:, second])
    return np.nan_to_num(signs, nan=0.0)


def tau_b_matrix(points: np.ndarray) -> np.ndarray:
    """Kendall tau-b between every pair of rows of `points` (n, d) -> (n, n).

    NaN where a row has no untied pair (a constant vector: tau-b is undefined, as in scipy).
    """
    signs = pair_signs(np.asarray(points, dtype=float))
    untied = np.count_nonzero(signs, axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (signs @ signs.T) / np.sqrt(np.outer(untied, untied))


def _run_starts(boundary: np.ndarray) -> np.ndarray:
    """Where the run of equal values holding each position starts, in sorted rows whose
    `boundary` is True where a new run begins."""
    positions = np.broadcast_to(np.arange(boundary.shape[1]), boundary.shape)
    return np.maximum.accumulate(np.where(boundary, positions, 0), axis=1)


def _new_run(sorted_rows: np.ndarray) -> np.ndarray:
    boundary = np.ones(sorted_rows.shape, dtype=bool)
    boundary[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    return boundary


def _tied_pairs(boundary: np.ndarray) -> np.ndarray:
    """Pairs of equal values per row, sum of t(t−1)/2 over runs: each position pairs with those before it in its run."""
    starts = _run_starts(boundary)
    return (np.arange(boundary.shape[1]) - starts).sum(axis=1)


def _inversions(codes: np.ndarray) -> np.ndarray:
    """Pairs i < j with codes[k, i] > codes[k, j] per row; integer codes in [0, d).

    Bottom-up merge sort: at each level, every element of a right run counts the elements of
    its sorted left run above it. Runs are offset by (d + 1) each so one searchsorted over all
    left runs of all rows answers every query of the level at once.
    """
    rows, d = codes.shape
    size = 1 << max(0, (d - 1).bit_length())
    merged = np.full((rows, size), d, dtype=np.int64)  # padding at the end, above every code: no inversions
    merged[:, :d] = codes
    total = np.zeros(rows, dtype=np.int64)
    width = 1
    while width < size:
        runs = merged.reshape(rows, size // (2 * width), 2, width)
        n_runs = rows * (size // (2 * width))
        offset = (np.arange(n_runs, dtype=np.int64) * (d + 1)).reshape(rows, -1, 1)
        left, right = runs[:, :, 0] + offset, runs[:, :, 1] + offset
        at_most = np.searchsorted(left.ravel(), right.ravel(), side="right").reshape(right.shape)
        at_most -= (np.arange(n_runs, dtype=np.int64) * width).reshape(rows, -1, 1)
        total += (width - at_most).sum(axis=(1, 2))
        merged = np.sort(merged.reshape(rows, -1, 2 * width), axis=-1, kind="stable").reshape(rows, size)
        width *= 2
    return total


def tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b between `x[k]` and `y[k]` for every row k of two (n, d) arrays -> (n,).

    Sorted by (x, y), the discordant pairs are the inversions of y and the tied pairs are runs of
    equal values, so C − D = n0 − t_x − t_y + t_xy − 2·D. NaN where a row is constant (as scipy)
    or holds a non-finite value.
    """
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    finite = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    x, y = np.where(finite[:, None], x, 0.0), np.where(finite[:, None], y, 0.0)
    n = x.shape[1]
    by_y = np.argsort(y, axis=1, kind="stable")
    y_sorted = np.take_along_axis(y, by_y, axis=1)
    y_new = _new_run(y_sorted)
    codes = np.empty_like(by_y)  # y's rank with ties sharing the lowest one
    np.put_along_axis(codes, by_y, _run_starts(y_new), axis=1)
    by_xy = np.lexsort((y, x), axis=-1)
    x_new = _new_run(np.take_along_axis(x, by_xy, axis=1))
    xy_codes = np.take_along_axis(codes, by_xy, axis=1)
    xy_new = x_new | _new_run(xy_codes)
    pairs = n * (n - 1) / 2
    t_x, t_y, t_xy = _tied_pairs(x_new), _tied_pairs(y_new), _tied_pairs(xy_new)
    numerator = pairs - t_x - t_y + t_xy - 2 * _inversions(xy_codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = numerator / np.sqrt((pairs - t_x) * (pairs - t_y))
    return np.where(finite & (pairs > t_x) & (pairs > t_y), tau, np.nan)


def tau_distance(tau: np.ndarray, undefined_tau: float = 0.0) -> np.ndarray:
    """D = −log((tau + 1) / 2) with tau clipped below at −0.999 (paper eq. 9).

    An undefined tau (a constant ranking, e.g. every approach scoring AD = 0 on an image)
    is read as `undefined_tau` — by default 0, "no agreement either way", D = log 2 — so the
    point stays in the embedding instead of poisoning it with NaN. The diagonal is 0.
    """
    tau = np.where(np.isnan(tau), undefined_tau, tau)
    distance = -np.log((np.clip(tau, TAU_FLOOR, 1.0) + 1.0) / 2.0)
    np.fill_diagonal(distance, 0.0)
    return np.maximum(distance, 0.0)


def metric_kendall(means: pd.DataFrame) -> pd.DataFrame:
    """Tau-b between metrics over the approach means (paper Fig. 3).

    Lower-is-better metrics are negated first, so tau > 0 means two metrics agree on which
    approaches are better. Approaches with a missing mean for either metric are left out of
    that pair (as scipy's nan_policy="omit" would).
    """
    metrics = list(means.columns)
    oriented = means.to_numpy(dtype=float) * np.array([signed_for_higher_better(m) for m in metrics])
    columns = oriented.T  # one row per metric
    if np.isnan(columns).any():
        tau = np.array(
            [[_tau_complete(columns[i], columns[j]) for j in range(len(metrics))] for i in range(len(metrics))]
        )
    else:
        tau = tau_b_matrix(columns)
    labels = [metric_label(m) for m in metrics]
    return pd.DataFrame(tau, index=labels, columns=labels)


def _tau_complete(x: np.ndarray, y: np.ndarray) -> float:
    both = ~(np.isnan(x) | np.isnan(y))
    return float(tau_b_matrix(np.stack([x[both], y[both]]))[0, 1]) if both.sum() >= 2 else np.nan
