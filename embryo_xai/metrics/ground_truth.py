"""Ground-truth faithfulness on the synthetic embryos: what each structure truly matters to the model,
and how well a saliency map ranks the structures by it.

The synthetic generator redraws a frame with one structure removed and nothing else changed
(``data/synthetic/counterfactual.py``): an in-distribution removal, unlike the black or blurred pixels of
deletion and insertion. So, per explained image and structure ``s``:

- **true importance** ``I_s = c(x) - c(x without s)``, the drop of the explained class's score (the
  engine's score: softmax probability by default) when ``s`` is removed;
- **map saliency per structure** ``S_s``: the mean of the map over the structure's pixels, the map
  upsampled to the image as the metrics upsample it (``metrics.upsample``; min-max normalisation is
  monotone and would not change a rank);
- **ground-truth faithfulness**: Spearman's rank correlation between ``S`` and ``I`` over the
  structures present in the crop (average ranks for ties), and the **top-1 hit**: 1 when the most
  salient structure is (one of) the most important. NaN with fewer than two structures, or where
  either side is constant (Spearman).

Everything is batched tensors on the model's device: structures are padded to the image with most
structures and masked by ``valid``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.device import resolve_batch_size
from embryo_xai.metrics.perturb import upsample_maps
from embryo_xai.scoring import ClassScore


def average_ranks(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, S) ranks 1..n of each row's valid entries, ties sharing their average rank; 0 where invalid.

    Pairwise comparisons (S is a handful of structures): rank = 1 + #smaller + #equal-others / 2."""
    both = valid[:, :, None] & valid[:, None, :]
    smaller = ((values[:, None, :] < values[:, :, None]) & both).sum(-1)
    equal = ((values[:, None, :] == values[:, :, None]) & both).sum(-1) - 1
    return torch.where(valid, 1.0 + smaller + equal.clamp_min(0) / 2.0, 0.0)


def masked_spearman(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) Spearman's rho between the rows of ``a`` and ``b`` (N, S) over the entries ``valid`` and finite
    in both; NaN where fewer than two entries remain or either side is constant (as scipy)."""
    valid = torch.isfinite(a) & torch.isfinite(b) & (True if valid is None else valid)
    ra, rb = average_ranks(a, valid).double(), average_ranks(b, valid).double()
    count = valid.sum(1).double()
    mean_rank = (count + 1) / 2
    da = torch.where(valid, ra - mean_rank[:, None], 0.0)
    db = torch.where(valid, rb - mean_rank[:, None], 0.0)
    numerator, denominator = (da * db).sum(1), (da.square().sum(1) * db.square().sum(1)).sqrt()
    rho = numerator / denominator.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where((count >= 2) & (denominator > 0), rho, torch.nan).float()


def top1_hit(saliency: torch.Tensor, importance: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) 1 when the most salient valid structure is among the most important ones (ties in the
    saliency: the first in structure order, as a reader's argmax), else 0; NaN with < 2 structures."""
    valid = valid & torch.isfinite(saliency) & torch.isfinite(importance)
    low = torch.finfo(saliency.dtype).min
    chosen = torch.where(valid, saliency, low).argmax(1, keepdim=True)
    best = torch.where(valid, importance, low).amax(1, keepdim=True)
    hit = (importance.gather(1, chosen) >= best).squeeze(1).float()
    return torch.where(valid.sum(1) >= 2, hit, torch.nan)


def structure_saliency(maps: torch.Tensor, masks: torch.Tensor, upsample: str = "bilinear") -> torch.Tensor:
    """(N, S) mean of each map, upsampled to the masks' size, over each structure mask (N, S, H, W) bool;
    NaN for an empty mask (a structure outside the crop)."""
    up = upsample_maps(maps, masks.shape[-2:], upsample)[:, None]
    weights = masks.float()
    area = weights.flatten(2).sum(-1)
    total = (weights * up).flatten(2).sum(-1)
    return torch.where(area > 0, total / area.clamp_min(1.0), torch.nan)


def true_importance(model: nn.Module, originals: torch.Tensor, removed: torch.Tensor, structure_image: torch.Tensor,
                    targets: torch.Tensor, scorer: ClassScore | None = None,
                    batch_size: int | str | None = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the originals (N,) and the drop per counterfactual (K,).

    ``originals`` (N, 3, H, W) model inputs; ``removed`` (K, 3, H, W) the counterfactuals of every image,
    ``structure_image`` (K,) the index of the original each belongs to; ``targets`` (N,) the explained
    classes. Forwards in chunks of ``batch_size`` under ``torch.inference_mode``."""
    inputs = torch.cat([originals, removed])
    scorer = scorer or ClassScore()
    classes = torch.cat([targets, targets[structure_image]])
    size = resolve_batch_size(batch_size, inputs)
    with torch.inference_mode():
        scores = torch.cat([scorer(model(inputs[i:i + size]), classes[i:i + size])
                            for i in range(0, len(inputs), size)]).float()
    original = scores[: len(originals)]
    return original.clone(), (original[structure_image] - scores[len(originals):]).clone()


def ground_truth_faithfulness(saliency: torch.Tensor, importance: torch.Tensor,
                              valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"gt_spearman": (N,), "gt_top1": (N,)}`` of maps' per-structure saliency against true importance."""
    return {"gt_spearman": masked_spearman(saliency, importance, valid),
            "gt_top1": top1_hit(saliency, importance, valid)}
