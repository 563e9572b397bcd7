"""Compose the project's Hydra configs in tests as the entry points would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")


def compose_config(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg.hydra  # as in a real run, where the job config has no hydra node
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.root_dir = str(REPO)
    return cfg
