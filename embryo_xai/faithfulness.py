"""``python -m embryo_xai.faithfulness model=… method=… [train_run=… | ckpt=…]``

Explains and scores one approach (model + method) on a seeded sample of the test set and
writes one row per image x metric to ``faithfulness_rows.csv`` in the run dir, plus
``summary.json`` and ``maps.npz``. Rerunning the same command resumes: finished rows are
never recomputed. ``-m method=gradcampp,scorecam`` sweeps methods (Hydra multirun).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import fields
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from embryo_xai.data.datamodule import EmbryoDataModule
from embryo_xai.errors import CheckpointError, exit_on_usage_error
from embryo_xai.evaluation import ApproachRun, EvaluationConfig, check_names, evaluate_approach
from embryo_xai.models.checkpoint import load_classifier
from embryo_xai.runs import FaithfulnessRun, TrainingRun
from embryo_xai.tracking import faithfulness_payload, init_run
from embryo_xai.utils import compose_job

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_checkpoint(cfg: DictConfig) -> tuple[Path, TrainingRun]:
    """(checkpoint, its training run) from ``ckpt``, ``train_run`` or the latest run of ``model``."""
    if cfg.ckpt:
        return Path(cfg.ckpt), TrainingRun.of_checkpoint(cfg.ckpt)
    if not cfg.train_run:
        run = TrainingRun.latest(cfg.paths.log_dir, cfg.model.net.name)
        log.info("explaining the latest finished %s run: %s (pass train_run=DIR for another)",
                 cfg.model.net.name, run.dir)
        return run.checkpoint, run
    run = TrainingRun.given(cfg.train_run)
    return run.checkpoint, run


def evaluation_config(cfg: DictConfig) -> EvaluationConfig:
    """The ``evaluation`` group's keys, which this entry point takes at the top level (``n_images=30``)."""
    return EvaluationConfig(**{f.name: cfg[f.name] for f in fields(EvaluationConfig)})


def run(cfg: DictConfig) -> dict:
    check_names([cfg.method.name], cfg.metrics.metrics)  # before loading anything
    ckpt, training = resolve_checkpoint(cfg)
    model, net_cfg = load_classifier(ckpt)
    model_name = cfg.model.net.name
    if net_cfg["name"] != model_name:
        raise CheckpointError(f"{ckpt} holds model {net_cfg['name']!r}, not {model_name!r}: "
                              f"pass model={net_cfg['name']}")
    data_cfg = training.data_config(cfg.data)
    data_cfg.pop("_target_", None)
    datamodule = EmbryoDataModule(**data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    test_set = datamodule.datasets["test"]
    evaluation = evaluation_config(cfg)
    image_ids = evaluation.sample(len(test_set))
    metric_cfg = OmegaConf.to_container(cfg.metrics, resolve=True)
    approach = ApproachRun(
        FaithfulnessRun(Path(cfg.paths.output_dir)), model_name, cfg.method.name,
        OmegaConf.to_container(cfg.method, resolve=True), tuple(metric_cfg.pop("metrics")), metric_cfg, evaluation)
    accuracy = training.acc_video
    approach.claim({"train_run": str(training.dir.resolve()), "ckpt": str(ckpt.resolve()),
                    "train_accuracy": None if math.isnan(accuracy) else accuracy, "data": data_cfg})
    # one W&B run per approach, in the study's group; progress (images done) is its step, so it can be watched live
    tracker = init_run(cfg, "faithfulness", str(cfg.run_name), cfg.paths.output_dir)
    on_batch = None if tracker is None else (lambda done: tracker.log({"faithfulness/images_done": done}, step=done))
    try:
        summary = evaluate_approach(model, test_set, image_ids, approach, device=resolve_device(cfg.device),
                                    on_batch=on_batch)
        if tracker is not None:
            payload = faithfulness_payload(approach.run, summary, "faithfulness")
            tracker.log(payload, step=summary["n_images"])
            tracker.summary.update({k: v for k, v in payload.items() if "/mean/" in k or "/undefined/" in k})
    finally:
        if tracker is not None:
            tracker.finish()
    means = ", ".join(f"{k}={v:.4f}" for k, v in summary["means"].items())
    log.info("%s on %d images: %s -> %s", approach.approach.label, summary["n_images"], means, approach.run.dir)
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
