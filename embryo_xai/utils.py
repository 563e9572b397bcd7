"""Small helpers shared by the entry points."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def register_resolvers() -> None:
    """OmegaConf resolvers the configs use (registered when ``embryo_xai`` is imported).

    ``${embryo_xai.cwd:}`` is the directory the command runs from: the default ``paths.root_dir``.
    Unlike ``${hydra:runtime.cwd}`` it resolves everywhere, including ``hydra.sweep.dir`` (which Hydra
    computes before any job exists) and configs composed without a Hydra run. ``${embryo_xai.conf_dir:}``
    is the project's config folder, where the Optuna sweep writes ``experiment/best_<model>.yaml``
    so that ``experiment=best_<model>`` finds it from any working directory."""
    resolvers = {"embryo_xai.cwd": os.getcwd, "embryo_xai.conf_dir": lambda: str(CONF_DIR)}
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def compose_job(config_name: str, overrides: list[str], output_dir: str | Path, root_dir: str | Path) -> DictConfig:
    """The job config ``python -m embryo_xai.<config_name> <overrides>`` would see, composed without
    a Hydra run: ``${hydra:...}`` interpolations resolve, and the run dir is ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # as in a real run, where the job config has no hydra node
        cfg.paths.root_dir = str(root_dir)
        cfg.paths.output_dir = str(output_dir)
    return cfg


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group dict that has a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(entry, _convert_="all") for entry in cfg.values()
            if isinstance(entry, DictConfig) and "_target_" in entry]


def write_json(path: Path, payload: dict) -> None:
    """Write atomically so an interrupted run never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)
