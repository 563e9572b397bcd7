"""The one LightningModule that trains, validates and tests every registered model."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from embryo_xai.data.stages import NUM_CLASSES
from embryo_xai.models.accuracy import StageAccuracy
from embryo_xai.models.checkpoint import load_backbone
from embryo_xai.models.registry import create_model

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def build_optimizer(params, name: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs["momentum"] = momentum
    return OPTIMIZERS[name](params, **kwargs)


class EmbryoLitModule(pl.LightningModule):
    """Wraps ``create_model(**net)``: the model's own loss for training, frame and per-video
    accuracy (torchmetrics, DDP-synced) for validation and test, per-stage test accuracy."""

    def __init__(self, net: dict, optimizer: dict | None = None, scheduler: str = "cosine",
                 num_classes: int = NUM_CLASSES, channels_last: bool = False,
                 backbone_init: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(num_classes=num_classes, **net)
        if backbone_init:  # warm start from another run's trained backbone (e.g. the CNN's)
            load_backbone(self.net, backbone_init)
        self.train_loss = MeanMetric()
        self.metrics = torch.nn.ModuleDict({
            split: torch.nn.ModuleDict({
                "acc_frame": StageAccuracy("frame"),
                "acc_video": StageAccuracy("video"),
            })
            for split in ("val", "test")
        })
        self.test_per_stage = MulticlassAccuracy(num_classes, average="none")
        self.test_per_stage_accuracy: torch.Tensor | None = None
        self.test_predictions: list[dict[str, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:  # NHWC: faster convolutions on CPUs (bf16) and tensor cores
            self.net.to(memory_format=torch.channels_last)

    def _images(self, batch: dict) -> torch.Tensor:
        images = batch["image"]
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self.net.forward_train(self._images(batch))
        losses = self.net.loss(outputs, batch["label"])
        self.train_loss(losses["loss"])
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}", value, on_step=False, on_epoch=True)
        return losses["loss"]

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        # wall time of the training part of the epoch (validation excluded), for the README's table
        self.log("train/epoch_seconds", time.perf_counter() - self._epoch_started, on_epoch=True)

    def _evaluate(self, batch: dict, split: str, logits: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.net(self._images(batch)) if logits is None else logits
        preds = logits.argmax(dim=1)
        metrics = self.metrics[split]
        for metric in metrics.values():
            metric(preds, batch["label"], batch["video_idx"], batch["index"])
        for name, metric in metrics.items():
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc_video")
        return preds

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.net(self._images(batch))
        preds = self._evaluate(batch, "test", logits)
        self.test_per_stage.update(preds, batch["label"])
        # per-frame log-probabilities: the morphokinetic evaluation decodes each video's sequence of them
        self.test_predictions.append({"index": batch["index"], "label": batch["label"], "prediction": preds,
                                      "video_idx": batch["video_idx"], "run": batch["run"],
                                      "log_probs": logits.float().log_softmax(dim=1)})

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def on_test_epoch_end(self) -> None:
        """Per-stage accuracy, and under DDP every rank's predictions gathered (the sampler gives each
        rank the same count, padding with repeated frames) with each frame kept once, in frame order.
        Runs on every rank: both are collectives."""
        self.test_per_stage_accuracy = self.test_per_stage.compute().cpu()
        self.test_per_stage.reset()
        if not self.test_predictions:
            return
        local = {k: torch.cat([p[k] for p in self.test_predictions]) for k in self.test_predictions[0]}
        if self.trainer.world_size > 1:
            # (world, N, ...) -> (world * N, ...): log-probabilities keep their class axis
            local = {k: self.all_gather(v).flatten(0, 1) for k, v in local.items()}
        order = torch.argsort(local["index"], stable=True)
        local = {k: v[order] for k, v in local.items()}
        first = torch.ones_like(local["index"], dtype=torch.bool)
        first[1:] = local["index"][1:] != local["index"][:-1]
        self.test_predictions = [{k: v[first] for k, v in local.items()}]

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.parameters(), **(self.hparams.optimizer or {}))
        if self.hparams.scheduler in (None, "none"):
            return optimizer
        if self.hparams.scheduler != "cosine":
            raise ValueError(f"unknown scheduler {self.hparams.scheduler!r}; choose cosine or none")
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
