"""Say up front what a training run will cost: no accelerator found, and the estimated time once the
first steps are timed (the paper-scale default takes days on a laptop CPU, silently otherwise)."""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

CPU_ALTERNATIVE = "experiment=demo is the CPU-sized study"


def format_duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


class TrainingTimeEstimate(pl.Callback):
    """Warns at fit start when training runs on the CPU, then logs the estimated training time after
    timing ``timed_steps`` steps (the first step, with its warm-up, is not timed). On the CPU, an
    estimate above ``cpu_warning_s`` repeats the CPU-sized alternative."""

    def __init__(self, timed_steps: int = 2, cpu_warning_s: float = 3600.0) -> None:
        super().__init__()
        self.timed_steps = timed_steps
        self.cpu_warning_s = cpu_warning_s
        self._start: float | None = None
        self._steps = 0
        self.estimate_s: float | None = None

    @staticmethod
    def _on_cpu(trainer: pl.Trainer) -> bool:
        return trainer.strategy.root_device.type == "cpu"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_cpu(trainer) and trainer.is_global_zero:
            log.warning("no accelerator found: training runs on the CPU (%d threads); the estimated time follows "
                        "the first steps; %s", torch.get_num_threads(), CPU_ALTERNATIVE)

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        # step 0 pays worker start-up and allocator warm-up: timing starts after it
        if self.estimate_s is None and trainer.global_step >= 1 and self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if self._start is None or self.estimate_s is not None:
            return
        self._steps += 1
        if self._steps < self.timed_steps:
            return
        per_step = (time.perf_counter() - self._start) / self._steps
        total_steps = trainer.estimated_stepping_batches
        if total_steps == float("inf"):  # max_epochs=-1: no end to estimate
            self.estimate_s = float("inf")
            return
        # validation and test add their forward passes: about a third of a training step per batch
        val_batches = sum(b for b in (trainer.num_val_batches or []) if isinstance(b, int | float))
        eval_batches = val_batches * max(trainer.max_epochs or 1, 1)
        self.estimate_s = per_step * (total_steps + eval_batches / 3)
        if not trainer.is_global_zero:
            return
        message = (f"estimated training time: {format_duration(self.estimate_s)} ({per_step:.2f} s/step x "
                   f"{total_steps} steps, plus validation)")
        if self._on_cpu(trainer) and self.estimate_s > self.cpu_warning_s:
            log.warning("%s on the CPU; %s", message, CPU_ALTERNATIVE)
        else:
            log.info(message)
