"""``python -m embryo_xai.faithfulness model=… method=… [train_run=… | ckpt=…]``

Explains and scores one approach (model + method) on a seeded sample of the test set and
writes one row per image x metric to ``faithfulness_rows.csv`` in the run dir, plus
``summary.json`` and ``maps.npz``. Rerunning the same command resumes: finished rows are
never recomputed. ``-m method=gradcampp,scorecam`` sweeps methods (Hydra multirun).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from embryo_xai.data.datamodule import EmbryoDataModule
from embryo_xai.errors import CheckpointError, exit_on_usage_error
from embryo_xai.evaluation import (
    ApproachRun,
    check_names,
    check_settings,
    evaluate_approach,
    load_model_from_checkpoint,
    sample_test_indices,
)
from embryo_xai.utils import compose_job

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def find_training_run(log_dir: Path, model: str) -> Path:
    """The most recent finished training run of ``model`` anywhere under ``log_dir`` (``outputs/``:
    ``train/runs``, sweeps, and the study's ``main/train/<model>`` of ``make run`` alike)."""
    candidates = []
    for metrics_file in log_dir.glob("**/test_metrics.json"):
        try:
            if json.loads(metrics_file.read_text()).get("model") == model:
                candidates.append(metrics_file.parent)
        except (OSError, json.JSONDecodeError):
            continue
    candidates = [c for c in candidates if (c / "checkpoints" / "best.ckpt").is_file()]
    if not candidates:
        raise CheckpointError(f"no finished training run of model {model!r} under {log_dir}; train one with "
                              f"`python -m embryo_xai.train model={model}` (CPU: add experiment=demo) or pass "
                              "train_run=DIR / ckpt=FILE")
    return max(candidates, key=lambda p: (p / "test_metrics.json").stat().st_mtime)


def resolve_checkpoint(cfg: DictConfig) -> tuple[Path, Path]:
    """(checkpoint, training run dir) from ``ckpt``, ``train_run`` or the latest run of ``model``."""
    if cfg.ckpt:
        ckpt = Path(cfg.ckpt)
        return ckpt, ckpt.resolve().parent.parent
    if not cfg.train_run:
        run_dir = find_training_run(Path(cfg.paths.log_dir), cfg.model.net.name)
        log.info("explaining the latest finished %s run: %s (pass train_run=DIR for another)",
                 cfg.model.net.name, run_dir)
        return run_dir / "checkpoints" / "best.ckpt", run_dir
    run_dir = Path(cfg.train_run)
    if not run_dir.is_dir():
        raise CheckpointError(f"train_run={run_dir}: no such directory")
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise CheckpointError(f"train_run={run_dir} has no finished checkpoint (checkpoints/best.ckpt): did its "
                              "training finish? Pass a finished run, or leave train_run out for the latest one")
    return run_dir / "checkpoints" / "best.ckpt", run_dir


def training_data_config(run_dir: Path, overrides: DictConfig) -> dict:
    """The data config the model was trained with (same split, crop and resize), plus overrides."""
    config_file = run_dir / "checkpoints" / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: the checkpoint's run dir must hold the resolved "
                              "training config (written by `python -m embryo_xai.train`)")
    data = OmegaConf.to_container(OmegaConf.load(config_file).data, resolve=True)
    given = OmegaConf.to_container(overrides, resolve=True) if isinstance(overrides, DictConfig) else overrides
    data.update({k: v for k, v in (given or {}).items() if v is not None})
    return data


def run(cfg: DictConfig) -> dict:
    check_names([cfg.method.name], cfg.metrics.metrics)  # before loading anything
    ckpt, train_run = resolve_checkpoint(cfg)
    model, net_cfg = load_model_from_checkpoint(ckpt)
    model_name = cfg.model.net.name
    if net_cfg["name"] != model_name:
        raise CheckpointError(f"{ckpt} holds model {net_cfg['name']!r}, not {model_name!r}: "
                              f"pass model={net_cfg['name']}")
    data_cfg = training_data_config(train_run, cfg.data)
    data_cfg.pop("_target_", None)
    datamodule = EmbryoDataModule(**data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    test_set = datamodule.datasets["test"]
    image_ids = sample_test_indices(len(test_set), cfg.n_images, cfg.sample_seed)
    metric_cfg = OmegaConf.to_container(cfg.metrics, resolve=True)
    approach = ApproachRun(
        out_dir=Path(cfg.paths.output_dir), model_name=model_name, method=cfg.method.name,
        method_cfg=OmegaConf.to_container(cfg.method, resolve=True), metric_names=tuple(metric_cfg.pop("metrics")),
        metric_cfg=metric_cfg, batch_size=cfg.batch_size, save_maps=cfg.save_maps,
        precision=str(cfg.precision), channels_last=cfg.channels_last)
    check_settings(approach.out_dir, approach.settings({"ckpt": str(ckpt.resolve()), "n_images": cfg.n_images,
                                                        "sample_seed": cfg.sample_seed, "data": data_cfg}))
    summary = evaluate_approach(model, test_set, image_ids, approach, device=resolve_device(cfg.device))
    means = ", ".join(f"{k}={v:.4f}" for k, v in summary["means"].items())
    log.info("%s on %d images: %s -> %s", summary["approach"], summary["n_images"], means, approach.out_dir)
    return summary


def run_in_process(overrides: list[str], run_dir: str | Path) -> dict:
    """``python -m embryo_xai.faithfulness <overrides> hydra.run.dir=<run_dir>`` without a new process
    (the study runner and benchmarks call it per approach): the same composed config, saved to
    ``<run_dir>/config.yaml``, and the log in ``<run_dir>/faithfulness.log``."""
    run_dir = Path(run_dir)
    cfg = compose_job("faithfulness", overrides, output_dir=run_dir, root_dir=os.getcwd())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    handler = logging.FileHandler(run_dir / "faithfulness.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        return run(cfg)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


@hydra.main(version_base="1.3", config_path="../conf", config_name="faithfulness")
@exit_on_usage_error
def main(cfg: DictConfig) -> float | None:
    summary = run(cfg)
    return summary["means"].get("dauc")


if __name__ == "__main__":
    main()
