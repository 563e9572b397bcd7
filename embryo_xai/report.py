"""``python -m embryo_xai.report [overrides]``: the study's tables and figures from finished runs.

Reads faithfulness runs (per-image rows, maps) and training runs (accuracy, class counts)
— by default everything under ``outputs/`` — or a published Table 1 (``table1_csv=``), and
writes into its own run dir: Table 1, the Kendall matrix (Fig. 3), t-SNE and UMAP of the
per-image rankings (Fig. 4), average ranks (Table 2), bootstrap intervals, the saliency
gallery (Fig. 5), the class distribution (Fig. 1) and per-stage accuracy, tied together
in ``report.md`` and a self-contained ``report.html``. Missing or partial results are
listed in the report; the rest still renders.

Each analysis presents itself (``analysis/sections/<analysis>.py``); this module loads the
study, runs the sections in `SECTIONS`' order and writes the documents.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import NoResultsError, Study, find_runs, load_study
from embryo_xai.analysis.published import load_published_table
from embryo_xai.analysis.sections import (
    SectionFunction,
    agreement,
    bootstrap,
    embedding,
    gallery,
    ground_truth,
    kendall,
    means_only,
    morphokinetics,
    ranking,
    reliability,
    tables,
    training,
)
from embryo_xai.analysis.writer import ReportWriter
from embryo_xai.errors import exit_on_usage_error

log = logging.getLogger(__name__)
TITLE = "Faithfulness of saliency maps for embryo stage recognition"
# The report's order after "Inputs"; per-image sections give way to `means_only` for a published table.
SECTIONS: tuple[SectionFunction, ...] = (
    tables.section,
    morphokinetics.section,
    kendall.section,
    reliability.section,
    ground_truth.section,
    agreement.section,
    ranking.section,
    means_only,
    bootstrap.section,
    embedding.section,
    gallery.section,
    training.section,
)


def _study(cfg: DictConfig, out_dir: Path) -> tuple[Study, str]:
    if cfg.get("table1_csv"):
        return load_published_table(cfg.table1_csv), f"published table `{cfg.table1_csv}`"
    roots = [Path(r) for r in (cfg.get("runs") or [cfg.paths.log_dir])]
    faithfulness_dirs, training_dirs = find_runs(roots)
    # Never read a report's own (or an earlier report's) folder as a run.
    faithfulness_dirs = [d for d in faithfulness_dirs if not d.resolve().is_relative_to(out_dir.resolve())]
    study = load_study(faithfulness_dirs, training_dirs)
    described = ", ".join(f"`{r}`" for r in roots)
    return study, (
        f"{len(faithfulness_dirs)} faithfulness run(s) and {len(training_dirs)} training run(s) found under {described}"
    )


def _inputs(study: Study, source: str, writer: ReportWriter) -> Section:
    """Where the study comes from, and what in it is incomplete or undefined."""
    n_images = 0 if study.values is None else study.values.shape[2]
    overview = Section(
        "Inputs",
        [
            f"Source: {source}. Approaches ({len(study.approaches)}, in the paper's order): "
            f"{', '.join(study.labels)}." + (f" Images scored: {n_images}." if n_images else "")
        ],
    )
    if study.incomplete.empty:
        overview.blocks.append("Every approach has every metric on every image.")
    else:
        overview.blocks += [
            "**Incomplete or undefined results** — listed here; missing values are left out:",
            Table(writer.add_table("incomplete", study.incomplete)),
        ]
    return overview


def build_report(cfg: DictConfig, out_dir: Path) -> Path:
    """Write every table, figure and the report documents into `out_dir`; return report.md's path.

    Raises NoResultsError (naming the command that produces results) when there is nothing to read.
    """
    writer = ReportWriter(out_dir)
    study, source = _study(cfg, out_dir)
    sections = [_inputs(study, source, writer)]
    for section in SECTIONS:
        sections += section(study, writer, cfg)
    report_md = writer.write(TITLE, sections)
    if cfg.get("wandb"):
        writer.log_wandb(cfg)
    return report_md


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
@exit_on_usage_error
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        report = build_report(cfg, out_dir)
    except NoResultsError as error:
        sys.exit(f"error: {error}")
    print(f"Report written: {report}")
    print(f"         HTML: {report.with_suffix('.html')}")


if __name__ == "__main__":
    main()
