"""Compose the project's Hydra configs in tests as the entry points would."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

from embryo_xai.utils import compose_job

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")


def compose_config(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    cfg = compose_job(name, overrides, output_dir=tmp_path / "run", root_dir=REPO)
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path / "logs")
    return cfg
