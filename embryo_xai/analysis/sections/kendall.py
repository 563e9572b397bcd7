"""Kendall tau-b between the metrics' rankings of the approaches (paper Fig. 3)."""

from __future__ import annotations

from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.kendall import metric_kendall
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import listed, lower_is_better
from embryo_xai.analysis.writer import ReportWriter


def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    tau = metric_kendall(study.means)
    negated = lower_is_better(list(study.means.columns))  # what metric_kendall negates
    flipped = f"; {listed(negated)} negated first" if negated else ""
    return [
        Section(
            "Kendall tau-b between metrics (Fig. 3)",
            [
                f"Tau-b between the metrics' rankings of the approaches (approach means{flipped}, "
                "so a positive tau means two metrics agree on which approaches are better).",
                Table(writer.add_table("kendall_tau", tau, index="metric"), decimals=2),
                writer.add_figure(
                    figures.kendall_heatmap(tau, writer.stem("kendall_tau")),
                    "Kendall tau-b between the metrics over the approach means.",
                ),
            ],
        )
    ]
