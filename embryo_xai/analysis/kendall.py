"""Kendall tau-b between rankings, all pairs at once, and the paper's tau distance (eq. 8–9).

tau-b of x and y equals s(x)·s(y) / sqrt(|s(x)|₀ · |s(y)|₀) where s(x) is the vector of
sign(x_i − x_j) over the pairs i < j: the dot product counts concordant minus discordant
pairs (a pair tied in either vector contributes 0) and |s|₀, the number of untied pairs,
is P + Q + (ties only in the other vector). So the whole (n × n) tau matrix is one
matrix product — 600 points of 9 approaches is a (600 × 36) @ (36 × 600) product.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from embryo_xai.analysis.spec import METRIC_LABELS, signed_for_higher_better

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
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    return pd.DataFrame(tau, index=labels, columns=labels)


def _tau_complete(x: np.ndarray, y: np.ndarray) -> float:
    both = ~(np.isnan(x) | np.isnan(y))
    return float(tau_b_matrix(np.stack([x[both], y[both]]))[0, 1]) if both.sum() >= 2 else np.nan
