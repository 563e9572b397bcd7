"""Table 1: mean faithfulness per approach and the model's accuracy, best per column in bold."""

from __future__ import annotations

from omegaconf import DictConfig

from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.spec import directions_sentence
from embryo_xai.analysis.tables import table1
from embryo_xai.analysis.writer import ReportWriter


def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    t1 = table1(study)
    writer.add_table("table1", t1, caption="Performance of the studied models and methods (mean over images).",
                     mark_best=True)
    return [
        Section(
            "Table 1 — mean faithfulness per approach",
            [
                "Mean of each metric over the scored images; accuracy is the model's per-video test accuracy (%). "
                f"Best value per column in bold. {directions_sentence(study.metrics)}",
                Table(t1.drop(columns="Approach"), mark_best=True),
                "Files: `table1.csv` (full precision, `best` column), `table1.md`, `table1.tex`.",
            ],
        )
    ]
