"""``python -m embryo_xai.train [overrides]``: train, restore the best checkpoint, test.

Returns the optimised metric (``optimized_metric``, validation per-video accuracy by
default) so Optuna and multirun sweeps can use it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from embryo_xai import morphokinetics
from embryo_xai.data.layout import time_elapsed_path
from embryo_xai.data.reader import Frame, read_time_elapsed
from embryo_xai.data.stages import STAGES
from embryo_xai.errors import UsageError, exit_on_usage_error
from embryo_xai.models.checkpoint import read_checkpoint
from embryo_xai.runs import TrainingRun
from embryo_xai.utils import instantiate_dict

log = logging.getLogger(__name__)


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor))
            and (not isinstance(v, torch.Tensor) or v.numel() == 1)}


def write_test_outputs(run: TrainingRun, cfg: DictConfig, model, datamodule, metrics: dict,
                       best_ckpt: str | None) -> dict:
    """``test_metrics.json`` (accuracies, per-stage accuracy, class counts) and
    ``test_predictions.csv`` (one row per test frame) for the report."""
    per_stage = model.test_per_stage_accuracy.tolist()
    payload = {
        "model": cfg.model.net.name,
        "test/acc_video": metrics.get("test/acc_video"),
        "test/acc_frame": metrics.get("test/acc_frame"),
        "per_stage_acc": dict(zip(STAGES, per_stage)),
        "class_counts": datamodule.class_counts(),
        "best_ckpt": best_ckpt,
        "val": {k: v for k, v in metrics.items() if k.startswith("val/")},
        "train_epoch_seconds": metrics.get("train/epoch_seconds"),
    }
    predictions = []
    if model.test_predictions:
        outputs = {k: torch.cat([p[k] for p in model.test_predictions]) for k in model.test_predictions[0]}
        frames = [datamodule.datasets["test"].frames[i] for i in outputs["index"].tolist()]
        hours = frame_hours(datamodule.root, frames)
        decoded = torch.full_like(outputs["label"], -1)
        options = cfg.get("morphokinetics") or {}
        if options.get("decoding", True):
            payload["morphokinetics"], decoded = morphokinetics.evaluate(
                [f.video for f in frames], outputs["run"], hours.to(outputs["label"].device), outputs["label"],
                outputs["log_probs"], options.get("tolerances_h"), options.get("n_resamples", 1000),
                options.get("seed", 0))
        rows = zip(frames, outputs["label"].tolist(), outputs["prediction"].tolist(), hours.tolist(), decoded.tolist())
        predictions = [(f.video, f.run, label, STAGES[label], prediction, hour, stage)
                       for f, label, prediction, hour, stage in rows]
    run.write_test_results(payload, predictions)
    return payload


def frame_hours(root: Path, frames: list[Frame]) -> torch.Tensor:
    """Hours since insemination of each frame from its video's timing file (NaN where there is none)."""
    times: dict[str, dict[int, float]] = {}
    for video in {f.video for f in frames}:
        path = time_elapsed_path(Path(root), video)
        times[video] = read_time_elapsed(path) if path.is_file() else {}
        if not times[video]:
            log.warning("no frame times for video %s (%s): its onsets are left out of p_t", video, path)
    return torch.tensor([times[f.video].get(f.run, float("nan")) for f in frames], dtype=torch.float64)


def test_only_checkpoint(cfg: DictConfig) -> str:
    """``train=false``: the checkpoint to test, ``ckpt_path`` or the latest finished run of the model."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    try:
        run = TrainingRun.latest(cfg.paths.log_dir, cfg.model.net.name)
    except UsageError as error:
        raise UsageError(f"test-only run (train=false): pass ckpt_path=FILE, or train first ({error})") from None
    log.info("test only: the latest finished %s run, %s (pass ckpt_path=FILE for another)", cfg.model.net.name, run.dir)
    return str(run.checkpoint)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test as configured; returns the logged scalar metrics."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    if cfg.get("ckpt_path"):
        read_checkpoint(cfg.ckpt_path)  # a corrupt or foreign file fails here in one line, not deep in Lightning
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    run = TrainingRun(output_dir)
    if trainer.is_global_zero:
        run.write_config(cfg)  # the resolved config travels with the checkpoint, so a checkpoint explains itself
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(_scalars(trainer.callback_metrics))
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not cfg.get("train", True):
            best = test_only_checkpoint(cfg)
        if not best:
            log.warning("no best checkpoint found: testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(_scalars(trainer.callback_metrics))
        if trainer.is_global_zero:
            payload = write_test_outputs(run, cfg, model, datamodule, metrics, best or None)
            if payload.get("morphokinetics"):
                timeline = morphokinetics.scalars(payload["morphokinetics"])
                metrics.update(timeline)
                for logger in loggers:
                    logger.log_metrics(timeline)
            log.info("test per-video accuracy: %.4f (frame accuracy %.4f); run dir: %s",
                     metrics.get("test/acc_video", float("nan")), metrics.get("test/acc_frame", float("nan")),
                     output_dir)
    for logger in loggers:
        # One W&B run per job: without this, later jobs of a multirun log into the first run.
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@exit_on_usage_error
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name or not cfg.get("train", True):
        return None  # a test-only run optimises nothing
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


if __name__ == "__main__":
    main()
