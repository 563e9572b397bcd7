"""AM: mean over channels of the target layer's feature maps (Zhou et al.'s activation map). Class-agnostic."""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer
from embryo_xai.explainers.registry import register_explainer


@register_explainer
class ActivationMap(Explainer):
    """Channel mean of the target layer's maps; ``targets`` only validated (the map ignores them)."""

    name = "am"
    label = "AM"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            acts = self.layer_activations(model, images)
            self.resolve_targets(acts.logits, targets)
            return acts.features.float().mean(dim=1)
