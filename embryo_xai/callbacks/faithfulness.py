"""After ``trainer.test``: explain the model just trained and score its maps (issue: faithfulness)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from embryo_xai.evaluation import ROWS_FILE, ApproachRun, check_names, evaluate_approach, sample_test_indices

log = logging.getLogger(__name__)


class FaithfulnessCallback(pl.Callback):
    """Runs each configured method on a seeded sample of the test set once testing ends.

    Rows go to ``<out_dir>/<model>-<method>/faithfulness_rows.csv`` (resumable, like the
    entry point); the means are logged to every logger, and the rows as a W&B table when
    W&B is on. Under DDP the images are sharded over ranks and gathered on rank 0.
    """

    def __init__(self, out_dir: str, methods: list, metrics: dict | None = None, n_images: int | str = 100,
                 sample_seed: int = 0, batch_size: int = 16, save_maps: bool = True,
                 precision: str = "32") -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.methods = [{"name": m} if isinstance(m, str) else dict(m) for m in methods]
        self.metric_cfg = dict(metrics or {})
        self.metric_names = tuple(self.metric_cfg.pop("metrics", ("dauc", "iauc", "dc", "ic", "iic", "ad", "add")))
        # checked when the callback is built, i.e. before training, not after hours of it
        self.metric_names = check_names([m["name"] for m in self.methods], self.metric_names)
        self.n_images = n_images
        self.sample_seed = sample_seed
        self.batch_size = batch_size
        self.save_maps = save_maps
        self.precision = str(precision)
        self.summaries: list[dict] = []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        test_set = trainer.datamodule.datasets["test"]
        image_ids = sample_test_indices(len(test_set), self.n_images, self.sample_seed)
        model = pl_module.net
        model_name = pl_module.hparams.net["name"]
        self.summaries = []
        # The test loop runs under inference mode; gradient-based methods need it off.
        with torch.inference_mode(False), torch.enable_grad():
            for method_cfg in self.methods:
                run = ApproachRun(self.out_dir / f"{model_name}-{method_cfg['name']}", model_name,
                                  method_cfg["name"], method_cfg, self.metric_names, dict(self.metric_cfg),
                                  self.batch_size, self.save_maps, self.precision)
                summary = evaluate_approach(model, test_set, image_ids, run, device=pl_module.device,
                                            rank=trainer.global_rank, world_size=trainer.world_size)
                if trainer.is_global_zero:
                    self.summaries.append(summary)
                    self._log(trainer, run, summary)

    def _log(self, trainer: pl.Trainer, run: ApproachRun, summary: dict) -> None:
        means = {f"faithfulness/{run.method}/{k}": v for k, v in summary["means"].items()}
        log.info("faithfulness of %s: %s", summary["approach"], means)
        for logger in trainer.loggers:
            logger.log_metrics(means, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                import pandas as pd

                rows = pd.read_csv(run.out_dir / ROWS_FILE)
                logger.log_table(key=f"faithfulness/{run.method}/rows", dataframe=rows)
