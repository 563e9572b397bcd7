"""Bootstrap over images: intervals for Table 1's means and the group average ranks, and P(first)."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.bootstrap import BootstrapResult, bootstrap
from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import per_image
from embryo_xai.analysis.spec import metric_label
from embryo_xai.analysis.writer import ReportWriter


def mean_intervals(result: BootstrapResult, approaches: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """"mean [low, high]" per approach (rows) and metric (columns), as Table 1 is laid out."""
    means = result.means
    cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(means["mean"], means["low"], means["high"])]
    wide = means.assign(cell=cells).pivot(index="approach", columns="metric", values="cell")
    return wide.loc[approaches, [metric_label(m) for m in metrics]]


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    n_boot = int(cfg.get("bootstrap", 0) or 0)
    if n_boot <= 0:
        return []
    level = float(cfg.get("ci", 0.95))
    result = bootstrap(study.values, study.approaches, n_boot, int(cfg.get("seed", 0)), level, study.metrics)
    writer.add_table("table1_ci", result.means)
    writer.add_table("ranks_ci", result.ranks)
    first = result.ranks.pivot(index="approach", columns="group", values="p_first").loc[study.labels]
    return [
        Section(
            f"Bootstrap over images ({n_boot} resamples, {int(level * 100)}% percentile CIs)",
            [
                "Images are resampled with replacement, the same resample for every approach. "
                "Mean [low, high] of each metric:",
                Table(mean_intervals(result, study.labels, study.metrics).reset_index()),
                "Average rank per group with its interval, and the fraction of resamples in which the approach "
                "ranks first in the group (`p_first`). Ties share their mid-rank and a tie for first splits "
                "`p_first`, so unlike Table 2 nothing depends on the approaches' order:",
                Table(result.ranks, decimals=2),
                Table(first.reset_index(), caption="P(first) per group", decimals=3),
                writer.add_figure(
                    figures.rank_intervals(result.ranks, writer.stem("rank_intervals"), level),
                    "Average ranks with bootstrap intervals.",
                ),
            ],
        )
    ]
