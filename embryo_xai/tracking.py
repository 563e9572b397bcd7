"""Weights & Biases for every step of a study: one place that decides the project, the study's group,
the job type (train / faithfulness / report / sweep-trial), offline or online, and what a faithfulness
run logs. Offline by default (``wandb sync`` uploads later); no API key is ever needed to run anything.

The W&B settings are the ``logger.wandb`` node (``conf/logger/wandb.yaml``) of the train and
faithfulness configs: ``logger=none`` turns W&B off, ``logger.wandb.offline=false`` logs online. The
report, which has no logger group, has ``wandb: offline|online|false``. ``WANDB_MODE=disabled`` in the
environment turns every step off (the tests do).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from embryo_xai.runs import FaithfulnessRun

PROJECT = "embryo_xai"
JOB_TYPES = ("train", "faithfulness", "report", "sweep-trial")
#: overlays logged per stage of a faithfulness run
OVERLAYS_PER_STAGE = 2


def study_name(cfg: DictConfig) -> str:
    """The study a step belongs to: ``study_name`` when set (the study runner sets it for every step),
    else the Hydra choice of ``study`` (the runner itself), else the output folder's name."""
    if cfg.get("study_name"):
        return str(cfg.study_name)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("study")
        if choice:
            return str(choice)
    return Path(str(cfg.get("out", "study"))).name


def wandb_mode(offline: bool = True) -> str:
    """``disabled`` when the environment says so, else offline unless asked for online."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return "disabled"
    return "offline" if offline else "online"


def init_run(cfg: DictConfig, job_type: str, name: str, save_dir: str | Path,
             settings: Mapping[str, Any] | None = None) -> Any | None:
    """A W&B run of ``job_type`` in the study's group, or None when W&B is off.

    ``settings`` is the W&B node (project, offline, tags ...; default ``cfg.logger.wandb``); the logged
    config is ``cfg`` resolved, so every hyper-parameter can be a dashboard axis."""
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type {job_type!r} is not one of {JOB_TYPES}")
    if settings is None:
        logger = cfg.get("logger") or {}
        settings = logger.get("wandb") if isinstance(logger, Mapping) else None
    if not settings:
        return None
    mode = wandb_mode(bool(settings.get("offline", True)))
    if mode == "disabled":
        return None
    import wandb

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=settings.get("project", PROJECT), dir=str(save_dir), mode=mode, name=name,
                      group=study_name(cfg), job_type=job_type, tags=list(settings.get("tags") or []),
                      config=OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False), reinit="create_new")


def _overlay(crop: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the crop with the map upsampled (nearest) onto it in the jet colour map."""
    from matplotlib import colormaps

    rows = np.linspace(0, saliency.shape[0] - 1, crop.shape[0]).round().astype(int)
    cols = np.linspace(0, saliency.shape[1] - 1, crop.shape[1]).round().astype(int)
    upsampled = saliency[np.ix_(rows, cols)]
    span = np.ptp(upsampled)
    normalised = (upsampled - upsampled.min()) / span if span > 0 else np.zeros_like(upsampled)
    heat = colormaps["jet"](normalised)[..., :3]
    grey = np.repeat(crop[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    return ((1 - alpha) * grey + alpha * heat).clip(0, 1).__mul__(255).astype(np.uint8)


def faithfulness_payload(run: FaithfulnessRun, summary: Mapping[str, Any], prefix: str,
                         overlays_per_stage: int = OVERLAYS_PER_STAGE) -> dict[str, Any]:
    """What a finished faithfulness run logs: ``<prefix>/mean/<metric>`` and ``<prefix>/undefined/<metric>``
    (one key per metric, the same in every approach's run: a bar chart over runs compares approaches),
    the rows as a table, and a few map overlays per stage."""
    import wandb

    payload: dict[str, Any] = {f"{prefix}/mean/{k}": v for k, v in summary.get("means", {}).items()}
    payload |= {f"{prefix}/undefined/{k}": v for k, v in summary.get("undefined", {}).items()}
    payload[f"{prefix}/n_images"] = summary.get("n_images")
    rows = run.rows()
    if rows is not None:
        payload[f"{prefix}/rows"] = wandb.Table(dataframe=rows.replace({np.nan: None}))
    if run.maps_file.is_file() and rows is not None:
        maps, crops = run.maps(), run.crops()
        firsts = rows.drop_duplicates("image_id").groupby("stage", sort=False).head(overlays_per_stage)
        images = [wandb.Image(_overlay(crops[i], maps[i]), caption=f"{stage} · {video} RUN{frame} (image {i})")
                  for i, stage, video, frame in firsts[["image_id", "stage", "video", "run"]].itertuples(index=False)
                  if i in crops and i in maps]
        if images:
            payload[f"{prefix}/overlays"] = images
    return payload
