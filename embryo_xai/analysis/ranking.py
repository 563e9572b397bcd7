"""Ranks of approaches per metric and average ranks per metric group (paper eq. 10, Table 2).

Rank 1 = best. Two tie rules (``ties``):

- ``appearance`` (Table 2): ties are broken by order of appearance (the earlier approach gets
  the better rank), which is what reproduces the paper's Table 2 from its Table 1.
- ``average``: tied approaches share the mean of the ranks they span (mid-ranks), so the
  ranks do not depend on the order approaches are listed in; used by the bootstrap.

A missing mean ranks last (several missing ones share the last ranks by the same rule).
Works on a single table (A, M) or on a stack of bootstrap tables (..., A, M) at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from embryo_xai.analysis.spec import METRICS, Approach, metric_groups, signed_for_higher_better

TIES = ("appearance", "average")


def ranks(means: np.ndarray, metrics: tuple[str, ...] = METRICS, ties: str = "appearance") -> np.ndarray:
    """Rank of each approach per metric; `means` is (..., A, M) with columns in `metrics` order.

    Values are first turned into "smaller is better" keys, NaN (missing) last. ``appearance``:
    a stable argsort gives ties to the earlier approach (integer ranks). ``average``: rank =
    1 + (approaches strictly better) + (other approaches tied) / 2, the mid-rank (float).
    """
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}; choose one of {', '.join(TIES)}")
    signs = np.array([signed_for_higher_better(m) for m in metrics])
    keys = -means * signs
    if ties == "average":
        keys = np.where(np.isnan(keys), np.inf, keys)  # missing: worse than any value, tied among themselves
        # (..., A, 1, M) vs (..., 1, A, M): compare every approach with every other, per metric.
        better = (keys[..., None, :, :] < keys[..., :, None, :]).sum(axis=-2)
        tied = (keys[..., None, :, :] == keys[..., :, None, :]).sum(axis=-2) - 1
        return 1.0 + better + tied / 2.0
    order = np.argsort(keys, axis=-2, kind="stable")
    result = np.empty_like(order)
    positions = np.broadcast_to(np.arange(1, means.shape[-2] + 1)[:, None], order.shape)
    np.put_along_axis(result, order, positions, axis=-2)
    return result


def average_ranks(
    means: np.ndarray, metrics: tuple[str, ...] = METRICS, ties: str = "appearance"
) -> dict[str, np.ndarray]:
    """Average rank per group (Mask, Highlight, All), each (..., A); groups use what `metrics` has."""
    per_metric = ranks(means, metrics, ties)
    result = {}
    for group, members in metric_groups(metrics).items():
        columns = [metrics.index(m) for m in members if m in metrics]
        if columns:
            result[group] = per_metric[..., columns].mean(axis=-1)
    return result


def table2(means: pd.DataFrame, approaches: list[Approach]) -> dict[str, pd.DataFrame]:
    """The paper's Table 2, one frame per group: average rank, approach, type, best first.

    Equal average ranks are listed attention models first, then in order of appearance —
    the order the paper prints (e.g. B-CNN before Ablation-CAM, both 4.33 in Mask).
    """
    metrics = tuple(means.columns)
    groups = average_ranks(means.to_numpy(dtype=float), metrics)
    tables = {}
    for group, avg in groups.items():
        frame = pd.DataFrame(
            {
                "average_rank": avg,
                "approach": [a.label for a in approaches],
                "type": [a.type for a in approaches],
                "appearance": np.arange(len(approaches)),
            }
        )
        # Round before sorting so that 13/3 and 4.333... computed differently still tie.
        frame["_key"] = frame["average_rank"].round(9)
        frame = frame.sort_values(["_key", "type", "appearance"], kind="stable")
        tables[group] = frame.drop(columns=["_key", "appearance"]).reset_index(drop=True)
    return tables
