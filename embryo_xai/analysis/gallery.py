"""Gather what the saliency gallery (paper Fig. 5) shows: chosen frames and every approach's map.

Maps and the crops they explain come from each faithfulness run's `maps.npz` (the crops exactly
as the model saw them), so a map lies over the pixels it explains and the report never opens
the data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from embryo_xai.analysis.loading import Study
from embryo_xai.runs import FaithfulnessRun

DISPLAY_SIZE = 224  # panel size when no frame is available to size the maps on


@dataclass
class GalleryData:
    frames: list[np.ndarray | None]  # per row, (H, W) in [0, 1]
    maps: np.ndarray  # (rows, approaches, H, W) min-max normalised, NaN where absent
    row_titles: list[str]
    column_titles: list[str]
    notes: list[str] = field(default_factory=list)


def load_maps(run_dirs: list[Path], key: str = "maps") -> dict[int, np.ndarray]:
    """{image_id: map} of one approach (``key="crops"``: the explained crops), later runs overriding
    earlier ones; an interrupted run's map batches count too."""
    loaded: dict[int, np.ndarray] = {}
    for run_dir in run_dirs:
        run = FaithfulnessRun(run_dir)
        loaded.update(run.maps() if key == "maps" else run.crops())
    return loaded


def select_frames(
    images: pd.DataFrame, stages: list[str], per_stage: int, candidates: set[int], seed: int
) -> pd.DataFrame:
    """Up to `per_stage` seeded frames of each stage among `candidates`, in the stages' order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for stage in stages:
        pool = images[(images["stage"] == stage) & images["image_id"].isin(candidates)]
        if len(pool) > per_stage:
            pool = pool.iloc[np.sort(rng.choice(len(pool), size=per_stage, replace=False))]
        chosen.append(pool)
    return pd.concat(chosen, ignore_index=True) if chosen else images.iloc[:0]


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) maps -> (N, *size) float32 by bilinear interpolation (align_corners=False), as the
    metrics upsample maps for IIC/AD/ADD; the same size returns the maps unchanged."""
    tensor = torch.from_numpy(np.asarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)[:, 0].numpy()


def upsample(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a native-resolution map to `size`, then min-max to [0, 1]."""
    resized = resize_maps(saliency[None], size)[0]
    low, high = resized.min(), resized.max()
    return (resized - low) / (high - low) if high > low else np.zeros_like(resized)


def _wrap_name(video: str) -> str:
    """A long video name on two lines, split at the "_" nearest its middle, so row labels stay short."""
    cuts = [i for i, char in enumerate(video) if char == "_"]
    if len(video) <= 16 or not cuts:
        return video
    cut = min(cuts, key=lambda i: abs(i - len(video) / 2))
    return f"{video[:cut]}\n{video[cut + 1 :]}"


def gather_gallery(study: Study, stages: list[str], per_stage: int, seed: int = 0) -> GalleryData | None:
    """Frames of the chosen stages with every approach's map; None when no run saved maps."""
    if study.images is None:
        return None
    run_dirs = [study.run_dirs.get(a, []) for a in study.approaches]
    maps_per_approach = [load_maps(dirs) for dirs in run_dirs]
    with_maps = [i for i, m in enumerate(maps_per_approach) if m]
    if not with_maps:
        return None
    notes = [f"no maps.npz for {study.approaches[i].label}" for i, m in enumerate(maps_per_approach) if not m]
    # Prefer frames every approach has a map for; fall back to frames any approach has.
    common = set.intersection(*(set(maps_per_approach[i]) for i in with_maps))
    candidates = common or set.union(*(set(maps_per_approach[i]) for i in with_maps))
    chosen = select_frames(study.images, stages, per_stage, candidates, seed)
    missing_stages = [s for s in stages if s not in set(chosen["stage"])]
    if missing_stages:
        notes.append(f"no mapped frame of stage {', '.join(missing_stages)}")
    if chosen.empty:
        return None
    crops: dict[int, np.ndarray] = {}
    for dirs in run_dirs:  # every approach explained the same crop of an image id (checked by loading)
        crops.update(load_maps(dirs, key="crops"))
    frames = [crops[i].astype(np.float32) / 255.0 if i in crops else None for i in chosen["image_id"]]
    sizes = [f.shape for f in frames if f is not None]
    size = sizes[0] if sizes else (DISPLAY_SIZE, DISPLAY_SIZE)
    if len(sizes) < len(frames):
        notes.append(f"{len(frames) - len(sizes)} frame(s) without their crop in maps.npz (runs saved before "
                     "crops were stored): maps shown alone")
    maps = np.full((len(chosen), len(study.approaches), *size), np.nan, dtype=np.float32)
    for r, image_id in enumerate(chosen["image_id"]):
        for a, approach_maps in enumerate(maps_per_approach):
            if image_id in approach_maps:
                maps[r, a] = upsample(approach_maps[image_id], size)
    row_titles = [
        f"{rec.stage} · RUN {rec.run}\n{_wrap_name(str(rec.video))}" for rec in chosen.itertuples(index=False)
    ]
    return GalleryData(frames, maps, row_titles, ["frame"] + study.labels, notes)
