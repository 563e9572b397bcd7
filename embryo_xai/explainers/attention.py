"""Attention maps of attention models (ABN, B-CNN, IBP, BR-NPA): ``model.attention(x)`` through the
explainer interface (``method=attention``). Class-agnostic: ``targets`` are only validated."""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer
from embryo_xai.explainers.registry import list_explainers, register_explainer


@register_explainer
class AttentionMap(Explainer):
    name = "attention"
    label = "-"
    uses_layer = False

    @classmethod
    def cannot_explain(cls, model: nn.Module) -> str | None:
        if getattr(model, "has_attention", False):
            return None
        post_hoc = [name for name in list_explainers() if name != cls.name]
        return (f"{type(model).__name__} has no attention map (has_attention is False); methods that apply: "
                f"{', '.join(post_hoc)}")

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        problem = self.cannot_explain(model)
        if problem:
            raise ValueError(problem)
        # one forward: run it in float32 even under bf16 autocast, so maps keep their ranking
        with torch.inference_mode(), torch.autocast(images.device.type, enabled=False):
            maps = model.attention(images)
        if maps.ndim != 3 or len(maps) != len(images):
            raise ValueError(f"{type(model).__name__}.attention must return (B, h, w), "
                             f"got {tuple(maps.shape)}")
        return maps
