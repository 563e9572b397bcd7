"""Grad-CAM (Selvaraju 2017): channel weights = spatial mean of dS/dA; map = relu(Σ_k w_k A_k).

S is the explained class score: by default the class logit, the paper's y^c "before the softmax"
(also pytorch-grad-cam's ``ClassifierOutputTarget``); ``score="prob"`` differentiates the softmax
probability instead.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, gradients_at_layer, weighted_channel_sum
from embryo_xai.explainers.registry import register_explainer


@register_explainer
class GradCAM(Explainer):
    name = "gradcam"
    label = "Grad-CAM"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        features, grads = gradients_at_layer(self, model, images, targets)
        return weighted_channel_sum(grads.mean(dim=(2, 3)), features)
