"""Agreement between the approaches' saliency maps: median Kendall tau-b over shared images.

For every two approaches and every image both have a map for, tau-b between the two maps'
pixels (the coarser map bilinearly upsampled, align_corners=False, to the finer one: the larger
size per side of the two, as the metrics and the gallery upsample maps). tau = 1: the same pixel
order; −1: the reverse. Per pair the median over images is reported, with the number of images
where tau is defined (a constant map has no order and is left out). Maps are paired by image id
(the ids checked by `loading.check_same_images` to name the same frames in every run).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

from embryo_xai.analysis.gallery import load_maps, resize_maps
from embryo_xai.analysis.kendall import tau_b_rows
from embryo_xai.analysis.loading import Study


@dataclass
class MapAgreement:
    tau: pd.DataFrame  # (A, A) median tau-b over shared images, symmetric, NaN where no image
    n_images: pd.DataFrame  # (A, A) images where that tau is defined


def maps_tau(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Tau-b between `first[k]` and `second[k]`, (N, h1, w1) and (N, h2, w2) maps -> (N,)."""
    size = (max(first.shape[1], second.shape[1]), max(first.shape[2], second.shape[2]))
    return tau_b_rows(*(resize_maps(maps, size).reshape(len(maps), -1) for maps in (first, second)))


def map_agreement(study: Study) -> MapAgreement | None:
    """Median map tau-b of every pair of approaches over the images both have a map for (None: no maps)."""
    if study.image_ids is None:
        return None
    per_approach = [load_maps(study.run_dirs.get(a, [])) for a in study.approaches]
    if not any(per_approach):
        return None
    ids = study.image_ids.tolist()  # only images whose rows were checked to name the same frames
    n = len(study.approaches)
    tau, counts = np.full((n, n), np.nan), np.zeros((n, n), dtype=int)
    for a, b in combinations_with_replacement(range(n), 2):
        first, second = per_approach[a], per_approach[b]
        shared = [i for i in ids if i in first and i in second]
        if not shared:
            continue
        values = maps_tau(np.stack([first[i] for i in shared]), np.stack([second[i] for i in shared]))
        defined = values[np.isfinite(values)]
        counts[a, b] = counts[b, a] = defined.size
        if defined.size:
            tau[a, b] = tau[b, a] = np.median(defined)
    labels = study.labels
    return MapAgreement(
        pd.DataFrame(tau, index=labels, columns=labels), pd.DataFrame(counts, index=labels, columns=labels)
    )
