"""Rankings per image embedded by t-SNE and UMAP over the Kendall-tau distance (paper Fig. 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.document import Section
from embryo_xai.analysis.embedding import RankingPoints, ranking_points, tsne, umap_embedding
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import labels, listed, per_image
from embryo_xai.analysis.spec import embedding_metrics, metric_label
from embryo_xai.analysis.writer import ReportWriter

TITLES = {"tsne": "t-SNE", "umap": "UMAP"}


def description(points: RankingPoints, metrics: tuple[str, ...]) -> str:
    embedded = embedding_metrics(metrics)
    n_images = len(points.metric) // len(embedded)
    excluded = labels([m for m in metrics if m not in embedded])
    why = f" ({listed(excluded)} excluded: binary per image)" if excluded else ""
    return (
        f"{len(points.metric)} points = {len(embedded)} metrics{why} × {n_images} images scored by every "
        "approach. Each point is the vector of the approaches' scores (lower-is-better metrics negated); "
        "distance D = −log((tau + 1)/2), tau clipped at −0.999. "
        f"{points.n_constant} point(s) rank every approach equally (tau undefined): their tau to any other point "
        "is taken as 0 (D = log 2); a NaN score is a tie."
    )


def coordinates(points: RankingPoints, seed: int, embed_cfg: DictConfig) -> dict[str, np.ndarray]:
    """{"tsne": (K, 2)[, "umap": (K, 2)]} of the points' distance matrix."""
    coords = {"tsne": tsne(points.distance, seed, float(embed_cfg.get("tsne_perplexity", 30)))}
    if embed_cfg.get("umap", True):
        coords["umap"] = umap_embedding(
            points.distance,
            seed,
            int(embed_cfg.get("umap_neighbors", 15)),
            float(embed_cfg.get("umap_min_dist", 0.1)),
        )
    return coords


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    embed_cfg, seed = cfg.get("embedding", {}), int(cfg.get("seed", 0))
    points = ranking_points(study.values, study.image_ids, None, embed_cfg.get("max_images"), seed, study.metrics)
    section = Section("Rankings per image: t-SNE and UMAP (Fig. 4)", [description(points, study.metrics)])
    if len(points.metric) < 4:
        section.blocks.append("Too few images scored by every approach for an embedding.")
        return [section]
    for name, xy in coordinates(points, seed, embed_cfg).items():
        metric = [metric_label(m) for m in points.metric]
        writer.add_table(name, pd.DataFrame({"metric": metric, "image_id": points.image_id, "x": xy[:, 0],
                                             "y": xy[:, 1]}))
        title = f"{TITLES[name]} of per-image rankings (Kendall-tau distance)"
        section.blocks.append(
            writer.add_figure(figures.embedding_scatter(xy, points.metric, writer.stem(name), title), title)
        )
    return [section]
