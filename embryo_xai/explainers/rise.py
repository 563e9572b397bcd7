"""RISE (Petsiuk 2018): saliency = Σ_i P(c | m_i ⊙ x)·m_i / (N·p) over N random masks.

The score is the class **probability**, as in the paper (``score="logit"`` is an option).
Masks follow Petsiuk's recipe: a binary s×s grid (each cell kept with probability p), bilinearly
upsampled to (s+1)·cell with cell = ceil(H/s), then cropped at a random shift in [0, cell) to H×W.
Grids and shifts come from a ``torch.Generator`` on the model's device seeded by ``seed``, drawn
once per call, so the same seed on the same device type gives the same masks and maps whatever
``batch_size`` is. The same N masks explain every image; (mask, image) rows are packed in chunks of
``batch_size``.

Native resolution (``map_size``): the s×s grid is the masks', not the map's. The saliency is summed at
the input resolution, then area-averaged (adaptive average pooling) to

- ``"features"`` (default): the h×w of the CNN's ``target_layer`` maps (14×14 for layer4 at 448 px),
  read from the one forward pass that also gives the explained classes, so RISE is scored with the
  same metric steps as the CAMs (docs/architecture.md, Conventions);
- an int ``n`` or a pair ``(h, w)``: that size (``7`` gives the former grid-sized maps);
- ``None``: no pooling, the input resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.explainers.base import Explainer, chunk_bounds
from embryo_xai.explainers.registry import register_explainer

FEATURES = "features"
MapSize = int | Sequence[int] | str | None


def parse_map_size(map_size: MapSize) -> tuple[int, int] | str | None:
    """``"features"``, None, n or (h, w) -> ``"features"``, None or (h, w) with positive sides."""
    if map_size is None or map_size == FEATURES:
        return map_size
    if isinstance(map_size, int):
        map_size = (map_size, map_size)
    sides = tuple(map_size) if isinstance(map_size, Sequence) and not isinstance(map_size, str) else ()
    if len(sides) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side >= 1
                                  for side in sides):
        raise ValueError(f"RISE map_size must be {FEATURES!r}, null, a positive int or [h, w]; got {map_size!r}")
    return sides


@register_explainer
class RISE(Explainer):
    name = "rise"
    label = "RISE"
    paper_score = "probability"
    #: the target layer is read only for its map size (``map_size="features"``), never explained
    uses_layer = True

    def __init__(self, num_masks: int = 4000, grid_size: int = 7, p: float = 0.5, seed: int = 0,
                 map_size: MapSize = FEATURES, **cfg) -> None:
        super().__init__(**cfg)
        if num_masks < 1 or grid_size < 1 or not 0 < p <= 1:
            raise ValueError(f"RISE needs num_masks >= 1, grid_size >= 1 and 0 < p <= 1; "
                             f"got {num_masks}, {grid_size}, {p}")
        self.num_masks, self.grid_size = int(num_masks), int(grid_size)
        self.p, self.seed = float(p), int(seed)
        self.map_size = parse_map_size(map_size)

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

    def logits_and_map_size(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Logits of the unmasked images and the output map size, from one forward pass (hooked at
        the target layer only when its h×w is the map size)."""
        if self.map_size == FEATURES:
            acts = self.layer_activations(model, images)
            return acts.logits, tuple(acts.features.shape[-2:])
        return model(images), self.map_size or tuple(images.shape[-2:])

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        batch, size = len(images), tuple(images.shape[-2:])
        with torch.inference_mode():
            logits, out_size = self.logits_and_map_size(model, images)
            targets = self.resolve_targets(logits, targets)
            upsampled, shifts = self.draw_masks(size, images.device)
            saliency = torch.zeros(batch, *size, device=images.device)
            # Rows are (mask, image) pairs, mask-major: a chunk needs masks first_mask..last_mask only.
            for start, stop in chunk_bounds(self.num_masks * batch, self.chunk_size(images)):
                first_mask, last_mask = start // batch, (stop - 1) // batch
                masks = self.crop(upsampled[first_mask:last_mask + 1], shifts[first_mask:last_mask + 1], size)
                row = torch.arange(start, stop, device=images.device)
                image_rows, mask_rows = row % batch, row // batch - first_mask
                logits = model(images[image_rows] * masks[mask_rows, None])
                scores = self.class_score(logits, targets[image_rows])
                saliency.index_add_(0, image_rows, scores[:, None, None] * masks[mask_rows])
            saliency /= self.num_masks * self.p
            # area averaging is linear: pooling the summed saliency once equals summing pooled masks
            return saliency if out_size == size else F.adaptive_avg_pool2d(saliency[:, None], out_size)[:, 0]
