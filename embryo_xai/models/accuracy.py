"""Accuracy as the paper reports it: per video (mean over videos of frame accuracy), and per frame.

Both keep (frame index, video, correct) per frame with ``cat`` reduction, so under DDP the ranks'
frames are pooled before averaging (a video split across ranks still counts once) and the frames
that a distributed sampler repeats to even out its shards are counted once: the synced value is
the single-process value.
"""

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


def unique_frames(frame_idx: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each frame index."""
    _, inverse = torch.unique(frame_idx, return_inverse=True)
    positions = torch.arange(len(frame_idx), device=frame_idx.device)
    first = torch.full((int(inverse.max()) + 1,), len(frame_idx), device=frame_idx.device, dtype=torch.long)
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")


class StageAccuracy(Metric):
    """``average="video"``: mean over videos of frame accuracy (the paper's); ``"frame"``: over frames."""

    full_state_update = False

    def __init__(self, average: str = "video", **kwargs) -> None:
        super().__init__(**kwargs)
        if average not in ("video", "frame"):
            raise ValueError(f"average must be 'video' or 'frame', got {average!r}")
        self.average = average
        self.add_state("correct", default=[], dist_reduce_fx="cat")
        self.add_state("video_idx", default=[], dist_reduce_fx="cat")
        self.add_state("frame_idx", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, video_idx: torch.Tensor,
               frame_idx: torch.Tensor | None = None) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        if frame_idx is None:  # no identity given: every row is its own frame
            offset = sum(len(c) for c in self.correct)
            frame_idx = torch.arange(offset, offset + len(preds), device=preds.device)
        self.correct.append((preds == target).to(torch.uint8))
        self.video_idx.append(video_idx.long())
        self.frame_idx.append(frame_idx.long())

    def compute(self) -> torch.Tensor:
        correct = dim_zero_cat(self.correct)
        if correct.numel() == 0:
            return torch.tensor(float("nan"))
        keep = unique_frames(dim_zero_cat(self.frame_idx))
        correct = correct[keep]
        if self.average == "frame":
            return correct.float().mean()
        return per_video_accuracy(correct, dim_zero_cat(self.video_idx)[keep])

