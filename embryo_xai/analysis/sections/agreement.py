"""Agreement between the approaches' saliency maps: median Kendall tau-b over shared images."""

from __future__ import annotations

from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.agreement import map_agreement
from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import per_image
from embryo_xai.analysis.writer import ReportWriter


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    section = Section("Agreement between the approaches' maps")
    agreement = map_agreement(study)
    if agreement is None:
        section.blocks.append("No saliency maps saved (`maps.npz`): map agreement skipped.")
        return [section]
    tau = writer.add_table("map_agreement", agreement.tau, index="approach")
    writer.add_table("map_agreement_images", agreement.n_images, index="approach", log=False)
    section.blocks += [
        "Median over the images both approaches have a map for of Kendall tau-b between their two maps' pixels; "
        "the coarser map is upsampled bilinearly (align_corners=False) to the finer one's size. 1 = the same "
        "pixel order, −1 = reversed; a constant map (no order) is left out. Images per pair: "
        "`map_agreement_images.csv`.",
        Table(tau, decimals=2),
        writer.add_figure(
            figures.kendall_heatmap(agreement.tau, writer.stem("map_agreement"), "Map agreement (median tau-b)"),
            "Median Kendall tau-b between the approaches' maps over shared images.",
        ),
    ]
    return [section]
