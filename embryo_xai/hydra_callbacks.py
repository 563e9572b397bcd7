"""Hydra callbacks (``hydra.callbacks``) around a sweep."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class OptunaStudyFiles(Callback):
    """Creates the SQLite study's folder before the sweeper opens it, and after the sweep turns
    the best trial into ``conf/experiment/best_<model>.yaml`` plus a printed override line."""

    def __init__(self, storage_dir: str, experiment_dir: str, model: str) -> None:
        self.storage_dir = Path(storage_dir)
        self.experiment_dir = Path(experiment_dir)
        self.model = model

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = Path(config.hydra.sweep.dir) / "optimization_results.yaml"
        if not results.is_file():
            log.warning("no %s: the sweep found no best trial", results)
            return
        best = yaml.safe_load(results.read_text())
        params = best.get("best_params", {})
        nested: dict = {}
        for dotted, value in params.items():
            node = nested
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        target = self.experiment_dir / f"best_{self.model}.yaml"
        header = (f"# @package _global_\n# Best of the Optuna study '{self.model}' (value {best.get('best_value')}),"
                  f" from {results}\n# python -m embryo_xai.train model={self.model} experiment=best_{self.model}\n")
        target.write_text(header + yaml.safe_dump(nested, sort_keys=True))
        overrides = " ".join(f"{k}={v}" for k, v in params.items())
        print(f"best parameters: {target}\n  python -m embryo_xai.train model={self.model} {overrides}")
