"""``python -m embryo_xai.report [overrides]``: the study's tables and figures from finished runs.

Reads faithfulness runs (per-image rows, maps) and training runs (accuracy, class counts)
— by default everything under ``outputs/`` — or a published Table 1 (``table1_csv=``), and
writes into its own run dir: Table 1, the Kendall matrix (Fig. 3), t-SNE and UMAP of the
per-image rankings (Fig. 4), average ranks (Table 2), bootstrap intervals, the saliency
gallery (Fig. 5), the class distribution (Fig. 1) and per-stage accuracy, tied together
in ``report.md`` and a self-contained ``report.html``. Missing or partial results are
listed in the report; the rest still renders.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from embryo_xai.analysis import figures
from embryo_xai.analysis.agreement import map_agreement
from embryo_xai.analysis.bootstrap import bootstrap
from embryo_xai.analysis.document import Figure, Section, Table, render_html, render_markdown
from embryo_xai.analysis.embedding import ranking_points, tsne, umap_embedding
from embryo_xai.analysis.gallery import gather_gallery
from embryo_xai.analysis.kendall import metric_kendall
from embryo_xai.analysis.loading import NoResultsError, Study, find_runs, load_study
from embryo_xai.analysis.published import load_published_table
from embryo_xai.analysis.ranking import table2
from embryo_xai.analysis.spec import EMBEDDING_METRICS, METRIC_LABELS
from embryo_xai.analysis.tables import table1, write_table
from embryo_xai.errors import exit_on_usage_error

log = logging.getLogger(__name__)
TITLE = "Faithfulness of saliency maps for embryo stage recognition"


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


def build_report(cfg: DictConfig, out_dir: Path) -> Path:
    """Write every table, figure and the report documents into `out_dir`; return report.md's path.

    Raises NoResultsError (naming the command that produces results) when there is nothing to read.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    study, source = _study(cfg, out_dir)
    seed = int(cfg.get("seed", 0))
    sections: list[Section] = []
    logged_tables: dict[str, pd.DataFrame] = {}
    logged_figures: dict[str, Path] = {}

    def add_figure(section: Section, name: str, png: Path, caption: str) -> None:
        section.blocks.append(Figure(png, caption))
        logged_figures[name] = png

    n_images = 0 if study.values is None else study.values.shape[2]
    overview = Section(
        "Inputs",
        [
            f"Source: {source}. Approaches ({len(study.approaches)}, in the paper's order): "
            f"{', '.join(study.labels)}." + (f" Images scored: {n_images}." if n_images else "")
        ],
    )
    if not study.incomplete.empty:
        overview.blocks += [
            "**Incomplete or undefined results** — listed here; missing values are left out:",
            Table(study.incomplete),
        ]
        logged_tables["incomplete"] = study.incomplete
        study.incomplete.to_csv(out_dir / "incomplete.csv", index=False)
    else:
        overview.blocks.append("Every approach has every metric on every image.")
    sections.append(overview)

    # Table 1
    t1 = table1(study)
    write_table(
        t1,
        out_dir,
        "table1",
        "Performance of the studied models and methods (mean over images).",
        mark_best=True,
    )
    logged_tables["table1"] = t1
    sections.append(
        Section(
            "Table 1 — mean faithfulness per approach",
            [
                "Mean of each metric over the scored images; accuracy is the model's per-video test accuracy "
                "(%). "
                "Best value per column in bold. Lower is better for DAUC and AD, higher for the others.",
                Table(t1.drop(columns="Approach"), mark_best=True),
                "Files: `table1.csv` (full precision, `best` column), `table1.md`, `table1.tex`.",
            ],
        )
    )

    # Kendall tau between metrics (Fig. 3)
    tau = metric_kendall(study.means)
    tau.to_csv(out_dir / "kendall_tau.csv")
    logged_tables["kendall_tau"] = tau.reset_index(names="metric")
    kendall = Section(
        "Kendall tau-b between metrics (Fig. 3)",
        [
            "Tau-b between the metrics' rankings of the approaches (approach means; DAUC and AD negated "
            "first, "
            "so a positive tau means two metrics agree on which approaches are better).",
            Table(tau.reset_index(names="metric"), decimals=2),
        ],
    )
    add_figure(
        kendall,
        "kendall_tau",
        figures.kendall_heatmap(tau, fig_dir / "kendall_tau"),
        "Kendall tau-b between the metrics over the approach means.",
    )
    sections.append(kendall)
    if study.values is not None:
        sections.append(_map_agreement_section(study, out_dir, fig_dir, logged_tables, add_figure))

    # Table 2: average ranks
    ranks = table2(study.means, study.approaches)
    rank_section = Section(
        "Table 2 — average rank per metric group",
        [
            "Rank 1 = best; ties broken by order of appearance. Mask = {DAUC, DC, ADD}, "
            "Highlight = {IAUC, IC, AD, IIC}, All = the seven metrics.",
        ],
    )
    for group, frame in ranks.items():
        stem = f"table2_{group.lower()}"
        write_table(frame, out_dir, stem, f"Average rank, {group} metrics.", decimals=2)
        logged_tables[stem] = frame
        rank_section.blocks.append(Table(frame, caption=group, decimals=2))
    sections.append(rank_section)

    if study.values is None:
        sections.append(
            Section(
                "Per-image analyses",
                [
                    "Only approach means are available (published table): the bootstrap, t-SNE/UMAP and "
                    "gallery "
                    "need per-image rows from faithfulness runs."
                ],
            )
        )
    else:
        sections += _per_image_sections(cfg, study, out_dir, fig_dir, seed, logged_tables, add_figure)
    sections += _training_sections(study, out_dir, fig_dir, logged_tables, add_figure)

    report_md = out_dir / "report.md"
    report_md.write_text(render_markdown(TITLE, sections, out_dir))
    (out_dir / "report.html").write_text(render_html(TITLE, sections))
    if cfg.get("wandb"):
        _log_wandb(cfg, out_dir, logged_tables, logged_figures)
    return report_md


def _map_agreement_section(study, out_dir, fig_dir, logged_tables, add_figure) -> Section:
    section = Section("Agreement between the approaches' maps")
    agreement = map_agreement(study)
    if agreement is None:
        section.blocks.append("No saliency maps saved (`maps.npz`): map agreement skipped.")
        return section
    agreement.tau.to_csv(out_dir / "map_agreement.csv")
    agreement.n_images.to_csv(out_dir / "map_agreement_images.csv")
    logged_tables["map_agreement"] = agreement.tau.reset_index(names="approach")
    section.blocks += [
        "Median over the images both approaches have a map for of Kendall tau-b between their two maps' pixels; "
        "the coarser map is upsampled bilinearly (align_corners=False) to the finer one's size. 1 = the same "
        "pixel order, −1 = reversed; a constant map (no order) is left out. Images per pair: "
        "`map_agreement_images.csv`.",
        Table(agreement.tau.reset_index(names="approach"), decimals=2),
    ]
    png = figures.kendall_heatmap(agreement.tau, fig_dir / "map_agreement", "Map agreement (median tau-b)")
    add_figure(section, "map_agreement", png, "Median Kendall tau-b between the approaches' maps over shared images.")
    return section


def _per_image_sections(cfg, study, out_dir, fig_dir, seed, logged_tables, add_figure) -> list[Section]:
    sections = []
    n_boot = int(cfg.get("bootstrap", 0) or 0)
    if n_boot > 0:
        level = float(cfg.get("ci", 0.95))
        result = bootstrap(study.values, study.approaches, n_boot, seed, level)
        result.means.to_csv(out_dir / "table1_ci.csv", index=False)
        result.ranks.to_csv(out_dir / "ranks_ci.csv", index=False)
        logged_tables |= {"table1_ci": result.means, "ranks_ci": result.ranks}
        wide = (
            result.means.assign(
                cell=[
                    f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
                    for m, lo, hi in zip(result.means["mean"], result.means["low"], result.means["high"])
                ]
            )
            .pivot(index="approach", columns="metric", values="cell")
            .loc[study.labels, list(METRIC_LABELS.values())]
        )
        first = result.ranks.pivot(index="approach", columns="group", values="p_first").loc[study.labels]
        section = Section(
            f"Bootstrap over images ({n_boot} resamples, {int(level * 100)}% percentile CIs)",
            [
                "Images are resampled with replacement, the same resample for every approach. "
                "Mean [low, high] of each metric:",
                Table(wide.reset_index()),
                "Average rank per group with its interval, and the fraction of resamples in which the "
                "approach "
                "ranks first in the group (`p_first`). Ties share their mid-rank and a tie for first splits "
                "`p_first`, so unlike Table 2 nothing depends on the approaches' order:",
                Table(result.ranks, decimals=2),
                Table(first.reset_index(), caption="P(first) per group", decimals=3),
            ],
        )
        add_figure(
            section,
            "rank_intervals",
            figures.rank_intervals(result.ranks, fig_dir / "rank_intervals", level),
            "Average ranks with bootstrap intervals.",
        )
        sections.append(section)

    embed_cfg = cfg.get("embedding", {})
    points = ranking_points(study.values, study.image_ids, EMBEDDING_METRICS, embed_cfg.get("max_images"), seed)
    n_points_images = len(points.metric) // len(EMBEDDING_METRICS)
    section = Section(
        "Rankings per image: t-SNE and UMAP (Fig. 4)",
        [
            f"{len(points.metric)} points = {len(EMBEDDING_METRICS)} metrics (IIC excluded: binary per "
            "image) × "
            f"{n_points_images} images scored by every approach. Each point is the vector of the approaches' "
            "scores "
            "(lower-is-better metrics negated); distance D = −log((tau + 1)/2), tau clipped at −0.999. "
            f"{points.n_constant} point(s) rank every approach equally (tau undefined): their tau to any "
            "other "
            "point is taken as 0 (D = log 2); a NaN score is a tie.",
        ],
    )
    if len(points.metric) >= 4:
        coords = {"tsne": tsne(points.distance, seed, float(embed_cfg.get("tsne_perplexity", 30)))}
        if embed_cfg.get("umap", True):
            coords["umap"] = umap_embedding(
                points.distance,
                seed,
                int(embed_cfg.get("umap_neighbors", 15)),
                float(embed_cfg.get("umap_min_dist", 0.1)),
            )
        for name, xy in coords.items():
            frame = pd.DataFrame(
                {
                    "metric": [METRIC_LABELS[m] for m in points.metric],
                    "image_id": points.image_id,
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
            frame.to_csv(out_dir / f"{name}.csv", index=False)
            logged_tables[name] = frame
            title = f"{'t-SNE' if name == 'tsne' else 'UMAP'} of per-image rankings (Kendall-tau distance)"
            add_figure(section, name, figures.embedding_scatter(xy, points.metric, fig_dir / name, title), title)
    else:
        section.blocks.append("Too few images scored by every approach for an embedding.")
    sections.append(section)

    gallery_cfg = cfg.get("gallery", {})
    gallery = gather_gallery(
        study,
        list(gallery_cfg.get("stages", ["sPNa", "s4", "sB"])),
        int(gallery_cfg.get("frames_per_stage", 2)),
        seed,
    )
    section = Section("Saliency gallery (Fig. 5)")
    if gallery is None:
        section.blocks.append("No saliency maps saved (`maps.npz`) for the chosen stages: gallery skipped.")
    else:
        section.blocks += [f"Note: {n}." for n in gallery.notes]
        add_figure(
            section,
            "gallery",
            figures.gallery(
                gallery.frames,
                gallery.maps,
                gallery.row_titles,
                gallery.column_titles,
                fig_dir / "gallery",
                gallery_cfg.get("cmap", "jet"),
                float(gallery_cfg.get("alpha", 0.5)),
            ),
            "Frames and each approach's saliency map (native resolution, bilinear upsampling).",
        )
    sections.append(section)
    return sections


def _training_sections(study, out_dir, fig_dir, logged_tables, add_figure) -> list[Section]:
    from embryo_xai.data.stages import STAGES

    section = Section("Data set and accuracy (Fig. 1)")

    def per_stage_bars(name: str, table: pd.DataFrame, title: str, ylabel: str, caption: str) -> None:
        """A per-stage table as CSV, W&B table and grouped bar figure."""
        table.to_csv(out_dir / f"{name}.csv", index_label="stage")
        logged_tables[name] = table.reset_index(names="stage")
        add_figure(section, name, figures.grouped_bars(table, fig_dir / name, title, ylabel), caption)

    with_counts = [t for t in study.trainings if t.class_counts]
    if with_counts:
        counts = pd.DataFrame(with_counts[-1].class_counts).reindex(STAGES).fillna(0).astype(int)
        per_stage_bars("class_distribution", counts, "Class distribution per split", "frames",
                       "Frames per stage in each split.")
    newest = {t.model: t for t in study.trainings if t.per_stage_acc}
    if newest:
        accuracy = pd.DataFrame({m: t.per_stage_acc for m, t in newest.items()}).reindex(STAGES) * 100
        per_stage_bars("per_stage_accuracy", accuracy, "Test accuracy per stage", "accuracy (%)",
                       "Per-stage test frame accuracy of each model.")
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


def _log_wandb(cfg: DictConfig, out_dir: Path, tables: dict[str, pd.DataFrame], images: dict[str, Path]) -> None:
    """Log the report's tables and figures to W&B (offline by default: `wandb sync` uploads later)."""
    import wandb

    mode = "online" if str(cfg.wandb) == "online" else "offline"
    run = wandb.init(
        project=cfg.get("wandb_project", "embryo_xai"),
        dir=str(out_dir),
        mode=mode,
        job_type="report",
        config=OmegaConf.to_container(cfg, resolve=False),
    )
    payload = {
        f"table/{name}": wandb.Table(dataframe=frame.reset_index(drop=True).replace({np.nan: None}))
        for name, frame in tables.items()
    }
    payload |= {f"figure/{name}": wandb.Image(str(png)) for name, png in images.items()}
    run.log(payload)
    run.finish()


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
