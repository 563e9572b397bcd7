"""The data set and the models' accuracy (paper Fig. 1): class distribution, per-stage and overall accuracy."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.document import Figure, Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.writer import ReportWriter
from embryo_xai.data.stages import STAGES


def per_stage_bars(writer: ReportWriter, name: str, table: pd.DataFrame, title: str, ylabel: str,
                   caption: str) -> Figure:
    """A per-stage table (stages as rows) as CSV and grouped bars."""
    writer.add_table(name, table.rename_axis("stage"), index="stage")
    return writer.add_figure(figures.grouped_bars(table, writer.stem(name), title, ylabel), caption)


def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    section = Section("Data set and accuracy (Fig. 1)")
    with_counts = [t for t in study.trainings if t.class_counts]
    if with_counts:
        counts = pd.DataFrame(with_counts[-1].class_counts).reindex(STAGES).fillna(0).astype(int)
        section.blocks.append(per_stage_bars(writer, "class_distribution", counts, "Class distribution per split",
                                             "frames", "Frames per stage in each split."))
    newest = {t.model: t for t in study.trainings if t.per_stage_acc}
    if newest:
        accuracy = pd.DataFrame({m: t.per_stage_acc for m, t in newest.items()}).reindex(STAGES) * 100
        section.blocks.append(per_stage_bars(writer, "per_stage_accuracy", accuracy, "Test accuracy per stage",
                                             "accuracy (%)", "Per-stage test frame accuracy of each model."))
        summary = pd.DataFrame(
            {
                "model": list(newest),
                "acc_video": [100 * t.acc_video for t in newest.values()],
                "acc_frame": [100 * t.acc_frame for t in newest.values()],
            }
        )
        section.blocks.append(Table(summary, caption="Test accuracy (%)", decimals=1))
    if not section.blocks:
        section.blocks.append("No training run (`test_metrics.json`) found: class distribution and accuracy skipped.")
    return [section]
