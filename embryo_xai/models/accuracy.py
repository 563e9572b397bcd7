"""Per-video accuracy (the paper's reported accuracy): mean over videos of frame accuracy."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def per_video_accuracy(correct: torch.Tensor, video_idx: torch.Tensor) -> torch.Tensor:
    """Mean over the videos present of each video's frame accuracy."""
    if correct.numel() == 0:
        return torch.tensor(float("nan"))
    videos, inverse = torch.unique(video_idx, return_inverse=True)
    hits = torch.zeros(len(videos), dtype=torch.float64, device=correct.device)
    counts = torch.zeros_like(hits)
    hits.index_add_(0, inverse, correct.to(torch.float64))
    counts.index_add_(0, inverse, torch.ones_like(correct, dtype=torch.float64))
    return (hits / counts).mean().float()


class PerVideoAccuracy(Metric):
    """Keeps (video, correct) per frame; ``cat`` reduction so DDP ranks' frames are pooled
    before the per-video means (a video split across ranks still counts once)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=[], dist_reduce_fx="cat")
        self.add_state("video_idx", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, video_idx: torch.Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        self.correct.append((preds == target).to(torch.uint8))
        self.video_idx.append(video_idx.long())

    def compute(self) -> torch.Tensor:
        return per_video_accuracy(dim_zero_cat(self.correct), dim_zero_cat(self.video_idx))
