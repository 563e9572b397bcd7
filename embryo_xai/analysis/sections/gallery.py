"""The saliency gallery (paper Fig. 5): chosen frames with every approach's map over them."""

from __future__ import annotations

from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.document import Section
from embryo_xai.analysis.gallery import gather_gallery
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import per_image
from embryo_xai.analysis.writer import ReportWriter


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    gallery_cfg = cfg.get("gallery", {})
    gallery = gather_gallery(
        study,
        list(gallery_cfg.get("stages", ["sPNa", "s4", "sB"])),
        int(gallery_cfg.get("frames_per_stage", 2)),
        int(cfg.get("seed", 0)),
    )
    section = Section("Saliency gallery (Fig. 5)")
    if gallery is None:
        section.blocks.append("No saliency maps saved (`maps.npz`) for the chosen stages: gallery skipped.")
        return [section]
    png = figures.gallery(
        gallery.frames,
        gallery.maps,
        gallery.row_titles,
        gallery.column_titles,
        writer.stem("gallery"),
        gallery_cfg.get("cmap", "jet"),
        float(gallery_cfg.get("alpha", 0.5)),
    )
    section.blocks += [f"Note: {n}." for n in gallery.notes]
    section.blocks.append(
        writer.add_figure(png, "Frames and each approach's saliency map (native resolution, bilinear upsampling).")
    )
    return [section]
