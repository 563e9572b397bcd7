"""Localisation of a saliency map against a ground-truth mask (plausibility, not faithfulness), as Quantus
0.6 defines it (``quantus.metrics.localisation``; parity in ``tests/test_ground_truth_parts.py``).

Maps (B, h, w) are upsampled to the masks' size (B, H, W) as the faithfulness metrics upsample them
(``perturb.upsample_maps``) and used as they are: Quantus normalises by the maximum first, which changes
none of these four for non-negative maps (every method's here). NaN for an empty mask.

- ``pointing_game`` (Zhang et al. 2018): 1 when a pixel of maximal saliency (any, if several tie) lies in
  the mask;
- ``relevance_mass_accuracy`` (Arras et al. 2022): the share of the map's total saliency inside the mask;
- ``relevance_rank_accuracy`` (Arras et al. 2022): the share of the K most salient pixels inside the mask,
  K = the mask's size (ties in the order of a stable sort of the negated map, i.e. raster order);
- ``roc_auc``: area under the ROC curve of the saliency as a score for "pixel in the mask" (ties count
  one half: the Mann-Whitney U statistic, as scikit-learn's ``roc_curve`` + ``auc``); NaN when the mask
  covers the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from embryo_xai.metrics.perturb import upsample_maps


def _flat(maps: torch.Tensor, masks: torch.Tensor, upsample: str) -> tuple[torch.Tensor, torch.Tensor]:
    if masks.shape[0] != maps.shape[0] or masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W) with B = {maps.shape[0]}, got {tuple(masks.shape)}")
    values = upsample_maps(maps, masks.shape[-2:], upsample).flatten(1).double()
    return values, masks.flatten(1).bool()


def _undefined_where_empty(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks.any(1), values, torch.nan).float()


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, upsample: str = "bilinear") -> torch.Tensor:
    """(B,) 1 when a maximal pixel lies in the mask, else 0."""
    values, masks = _flat(maps, masks, upsample)
    top = values == values.amax(1, keepdim=True)
    return _undefined_where_empty((top & masks).any(1).double(), masks)


def relevance_mass_accuracy(maps: torch.Tensor, masks: torch.Tensor, upsample: str = "bilinear") -> torch.Tensor:
    """(B,) saliency inside the mask / total saliency."""
    values, masks = _flat(maps, masks, upsample)
    return _undefined_where_empty((values * masks).sum(1) / values.sum(1), masks)


def relevance_rank_accuracy(maps: torch.Tensor, masks: torch.Tensor, upsample: str = "bilinear") -> torch.Tensor:
    """(B,) share of the |mask| most salient pixels that lie in the mask."""
    values, masks = _flat(maps, masks, upsample)
    order = torch.argsort(-values, dim=1, stable=True)
    position = torch.empty_like(order).scatter_(1, order, torch.arange(values.shape[1], device=values.device)
                                                .expand_as(order))
    size = masks.sum(1, keepdim=True)
    hits = ((position < size) & masks).sum(1)
    return _undefined_where_empty(hits / size[:, 0].clamp_min(1), masks)


def roc_auc(maps: torch.Tensor, masks: torch.Tensor, upsample: str = "bilinear") -> torch.Tensor:
    """(B,) ROC-AUC of the saliency for the mask: (sum of the mask pixels' average ranks - P(P+1)/2) / (P N)."""
    values, masks = _flat(maps, masks, upsample)
    ordered = values.sort(1).values
    below = torch.searchsorted(ordered, values, side="left")
    up_to = torch.searchsorted(ordered, values, side="right")
    ranks = (below + up_to + 1) / 2.0  # 1-based average rank of each pixel among its image's
    positives = masks.sum(1).double()
    negatives = masks.shape[1] - positives
    u = (ranks * masks).sum(1) - positives * (positives + 1) / 2
    auc = u / (positives * negatives).clamp_min(1)
    return _undefined_where_empty(torch.where(negatives > 0, auc, torch.nan), masks)


#: name -> (function, label, higher_is_better); each ``function(maps, masks, upsample="bilinear") -> (B,)``.
LOCALISATION_METRICS: dict[str, tuple[Callable[..., torch.Tensor], str, bool]] = {
    "pointing_game": (pointing_game, "Pointing game", True),
    "relevance_mass_accuracy": (relevance_mass_accuracy, "Relevance mass acc.", True),
    "relevance_rank_accuracy": (relevance_rank_accuracy, "Relevance rank acc.", True),
    "roc_auc": (roc_auc, "ROC-AUC", True),
}
