"""Table 2: average rank per metric group, ties broken by order of appearance (paper eq. 10)."""

from __future__ import annotations

from omegaconf import DictConfig

from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.ranking import table2
from embryo_xai.analysis.sections import labels, number_word
from embryo_xai.analysis.spec import metric_groups
from embryo_xai.analysis.writer import ReportWriter


def groups_sentence(metrics: list[str]) -> str:
    """"Mask = {DAUC, DC, ADD}, Highlight = {...}, All = the seven metrics." over the ranked `metrics`."""
    members = metric_groups(metrics)
    families = [f"{group} = {{{', '.join(labels(ms))}}}" for group, ms in members.items() if group != "All" and ms]
    return ", ".join([*families, f"All = the {number_word(len(members['All']))} metrics"]) + "."


def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    section = Section(
        "Table 2 — average rank per metric group",
        [f"Rank 1 = best; ties broken by order of appearance. {groups_sentence(list(study.means.columns))}"],
    )
    for group, frame in table2(study.means, study.approaches).items():
        writer.add_table(f"table2_{group.lower()}", frame, caption=f"Average rank, {group} metrics.", decimals=2)
        section.blocks.append(Table(frame, caption=group, decimals=2))
    return [section]
