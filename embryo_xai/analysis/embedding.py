"""2-D maps of how metrics rank approaches image by image (paper Fig. 4), by t-SNE and UMAP.

A point is one (metric, image): the vector of the approaches' scores for that metric on
that image, oriented so larger = better (lower-is-better metrics negated, as for the
Kendall matrix, so "agree on the ranking" means "close"). Points are compared with the
Kendall-tau distance of `kendall.tau_distance` and embedded from the precomputed matrix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from embryo_xai.analysis.kendall import tau_b_matrix, tau_distance
from embryo_xai.analysis.spec import METRICS, embedding_metrics, signed_for_higher_better


@dataclass
class RankingPoints:
    """Per-(metric, image) ranking vectors and their pairwise tau distance."""

    vectors: np.ndarray  # (K, A) oriented approach scores
    metric: np.ndarray  # (K,) metric key of each point
    image_id: np.ndarray  # (K,)
    distance: np.ndarray  # (K, K)
    n_constant: int  # points whose ranking is a full tie (their tau is undefined)


def ranking_points(
    values: np.ndarray,
    image_ids: np.ndarray,
    metrics: tuple[str, ...] | None = None,
    max_images: int | None = None,
    seed: int = 0,
    cube_metrics: tuple[str, ...] = METRICS,
) -> RankingPoints:
    """Points for every image that every approach has scored, optionally a seeded subset of them.

    `values` is (A, len(cube_metrics), N); `metrics` (default: those of `cube_metrics` that rank
    approaches on one image) are embedded. NaN entries inside a vector count as ties (no order).
    """
    scored = np.isfinite(values).any(axis=1).all(axis=0)  # every approach has some row for the image
    keep = np.flatnonzero(scored)
    if max_images is not None and len(keep) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=max_images, replace=False))
    metrics = embedding_metrics(cube_metrics) if metrics is None else metrics
    metric_idx = [cube_metrics.index(m) for m in metrics]
    signs = np.array([signed_for_higher_better(m) for m in metrics])
    # (A, m, n) -> (m, n, A) -> (m·n, A): points grouped by metric.
    oriented = values[:, metric_idx][:, :, keep] * signs[None, :, None]
    vectors = oriented.transpose(1, 2, 0).reshape(-1, values.shape[0])
    tau = tau_b_matrix(vectors)
    return RankingPoints(
        vectors=vectors,
        metric=np.repeat(np.array(metrics), len(keep)),
        image_id=np.tile(image_ids[keep], len(metrics)),
        distance=tau_distance(tau),
        n_constant=int(np.isnan(np.diag(tau)).sum()),
    )


def tsne(distance: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of a precomputed distance matrix -> (K, 2); perplexity capped below the point count."""
    from sklearn.manifold import TSNE

    perplexity = float(min(perplexity, max(1.0, (distance.shape[0] - 1) / 3)))
    model = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity, random_state=seed)
    return model.fit_transform(distance)


def umap_embedding(distance: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP of the same precomputed matrix -> (K, 2) (the paper could not: no numba tau)."""
    import umap

    n_neighbors = int(min(n_neighbors, distance.shape[0] - 1))
    model = umap.UMAP(
        n_components=2,
        metric="precomputed",
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1,
    )
    with warnings.catch_warnings():  # "inverse_transform unavailable" is expected with precomputed
        warnings.simplefilter("ignore", category=UserWarning)
        return model.fit_transform(distance)
