"""After ``trainer.test``: explain the model just trained and score its maps."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from embryo_xai.evaluation import ApproachRun, EvaluationConfig, check_names, evaluate_approach
from embryo_xai.metrics import METRIC_NAMES
from embryo_xai.runs import FaithfulnessRun
from embryo_xai.tracking import faithfulness_payload

log = logging.getLogger(__name__)


class FaithfulnessCallback(pl.Callback):
    """Runs each configured method on a seeded sample of the test set once testing ends.

    Rows go to ``<out_dir>/<model>-<method>/`` (a faithfulness run, resumable and guarded against
    mixing settings, like the entry point's); the means are logged to every logger, and the rows as
    a W&B table when W&B is on. Under DDP the images are sharded over ranks and gathered on rank 0.
    The evaluation options (``n_images`` … ``save_maps``) are those of ``conf/evaluation``.
    """

    def __init__(self, out_dir: str, methods: list, metrics: dict | None = None, train_run: str | None = None,
                 **evaluation) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.train_run = train_run
        self.methods = [{"name": m} if isinstance(m, str) else dict(m) for m in methods]
        self.metric_cfg = dict(metrics or {})
        # checked when the callback is built, i.e. before training, not after hours of it
        self.metric_names = check_names([m["name"] for m in self.methods],
                                        self.metric_cfg.pop("metrics", METRIC_NAMES))
        self.evaluation = EvaluationConfig(**evaluation)
        self.summaries: list[dict] = []

    def _training(self, trainer: pl.Trainer) -> dict:
        """The explained model's provenance, recorded in each run's settings."""
        accuracy = trainer.callback_metrics.get("test/acc_video")
        accuracy = float(accuracy) if accuracy is not None and not math.isnan(float(accuracy)) else None
        datamodule = getattr(trainer, "datamodule", None)
        return {"train_run": self.train_run, "ckpt": trainer.ckpt_path, "train_accuracy": accuracy,
                "data": dict(getattr(datamodule, "hparams", {}) or {})}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        test_set = trainer.datamodule.datasets["test"]
        image_ids = self.evaluation.sample(len(test_set))
        model = pl_module.net
        model_name = pl_module.hparams.net["name"]
        self.summaries = []
        # The test loop runs under inference mode; gradient-based methods need it off.
        with torch.inference_mode(False), torch.enable_grad():
            for method_cfg in self.methods:
                run = ApproachRun(FaithfulnessRun(self.out_dir / f"{model_name}-{method_cfg['name']}"), model_name,
                                  method_cfg["name"], method_cfg, self.metric_names, dict(self.metric_cfg),
                                  self.evaluation)
                if trainer.is_global_zero:
                    run.claim(self._training(trainer))
                summary = evaluate_approach(model, test_set, image_ids, run, device=pl_module.device,
                                            rank=trainer.global_rank, world_size=trainer.world_size)
                if trainer.is_global_zero:
                    self.summaries.append(summary)
                    self._log(trainer, run, summary)

    def _log(self, trainer: pl.Trainer, run: ApproachRun, summary: dict) -> None:
        means = {f"faithfulness/{run.method}/mean/{k}": v for k, v in summary["means"].items()}
        log.info("faithfulness of %s: %s", run.approach.label, means)
        for logger in trainer.loggers:
            logger.log_metrics(means, step=trainer.global_step)
            if isinstance(logger, WandbLogger):  # the entry point's keys, under the method (one run, many methods)
                logger.experiment.log(faithfulness_payload(run.run, summary, f"faithfulness/{run.method}"))
