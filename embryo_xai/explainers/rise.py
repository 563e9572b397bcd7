"""RISE (Petsiuk 2018): saliency = Σ_i score(m_i ⊙ x)·m_i / (N·p) over N random masks.

Masks follow Petsiuk's recipe: a binary s×s grid (each cell kept with probability p), bilinearly
upsampled to (s+1)·cell with cell = ceil(H/s), then cropped at a random shift in [0, cell) to H×W.
Grids and shifts come from a ``torch.Generator`` on the model's device seeded by ``seed``, drawn
once per call, so the same seed on the same device type gives the same masks and maps whatever
``batch_size`` is. The same N masks explain every image; (mask, image) rows are packed in chunks of
``batch_size``.

Native resolution: ``map_size`` (default 7, the grid size, as DESIGN §2) — the saliency is
accumulated from each mask area-averaged to ``map_size``, which equals area-averaging the
full-resolution saliency (it is linear in the masks). ``map_size=None`` keeps the input resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.explainers.base import Explainer, chunk_bounds


class RISE(Explainer):
    name = "rise"
    uses_layer = False

    def __init__(self, num_masks: int = 4000, grid_size: int = 7, p: float = 0.5, seed: int = 0,
                 map_size: int | tuple[int, int] | None = 7, **cfg) -> None:
        super().__init__(**cfg)
        if num_masks < 1 or grid_size < 1 or not 0 < p <= 1:
            raise ValueError(f"RISE needs num_masks >= 1, grid_size >= 1 and 0 < p <= 1; "
                             f"got {num_masks}, {grid_size}, {p}")
        self.num_masks, self.grid_size = int(num_masks), int(grid_size)
        self.p, self.seed = float(p), int(seed)
        self.map_size = (map_size, map_size) if isinstance(map_size, int) else map_size

    def draw_masks(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Upsampled grids (N, (s+1)·cell_h, (s+1)·cell_w) and crop shifts (N, 2), from the seed."""
        generator = torch.Generator(device=device).manual_seed(self.seed)
        s = self.grid_size
        grids = torch.rand(self.num_masks, 1, s, s, generator=generator, device=device) < self.p
        cells = [math.ceil(side / s) for side in size]
        shifts = torch.stack([torch.randint(0, cell, (self.num_masks,), generator=generator, device=device)
                              for cell in cells], dim=1)
        upsampled = F.interpolate(grids.float(), size=[(s + 1) * cell for cell in cells], mode="bilinear",
                                  align_corners=False)[:, 0]
        return upsampled, shifts

    @staticmethod
    def crop(upsampled: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Per-mask shifted H×W windows, gathered in one indexing op."""
        rows = shifts[:, :1] + torch.arange(size[0], device=shifts.device)
        cols = shifts[:, 1:] + torch.arange(size[1], device=shifts.device)
        index = torch.arange(len(upsampled), device=shifts.device)[:, None, None]
        return upsampled[index, rows[:, :, None], cols[:, None, :]]

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        batch, size = len(images), tuple(images.shape[-2:])
        out_size = tuple(self.map_size) if self.map_size is not None else size
        with torch.inference_mode():
            targets = self.resolve_targets(model(images), targets)
            upsampled, shifts = self.draw_masks(size, images.device)
            saliency = torch.zeros(batch, *out_size, device=images.device)
            # Rows are (mask, image) pairs, mask-major: a chunk needs masks first_mask..last_mask only.
            for start, stop in chunk_bounds(self.num_masks * batch, self.batch_size):
                first_mask, last_mask = start // batch, (stop - 1) // batch
                masks = self.crop(upsampled[first_mask:last_mask + 1], shifts[first_mask:last_mask + 1], size)
                row = torch.arange(start, stop, device=images.device)
                image_rows, mask_rows = row % batch, row // batch - first_mask
                logits = model(images[image_rows] * masks[mask_rows, None])
                scores = self.class_score(logits, targets[image_rows])
                pooled = F.adaptive_avg_pool2d(masks[:, None], out_size)[:, 0] if out_size != size else masks
                saliency.index_add_(0, image_rows, scores[:, None, None] * pooled[mask_rows])
            return saliency / (self.num_masks * self.p)
