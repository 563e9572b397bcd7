"""Grad-CAM++ (Chattopadhyay 2018, eq. 19 with the exponential trick, as pytorch-grad-cam).

With g = dS/dA: α = g² / (2g² + (Σ_ab A_ab)·g³), weights w_k = Σ_ij relu(g_ij)·α_ij,
map = relu(Σ_k w_k A_k). The closed form for α assumes the explained score is Y = exp(S), which
makes every higher derivative a power of g: S must be the class **logit**, our default and
pytorch-grad-cam's. ``score="prob"`` (gradients of the softmax probability) is an option that
breaks that assumption.

α is set to 0 where relu(g) is 0 (it does not contribute) or the denominator is 0. ``eps`` is added
to the denominator as pytorch-grad-cam does (its 1e-6); our default 0 keeps the definition exact:
where g² is not much larger than 1e-6 (small logit gradients, probability gradients always) that
epsilon would dominate α.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, gradients_at_layer, weighted_channel_sum
from embryo_xai.explainers.registry import register_explainer


@register_explainer
class GradCAMPlusPlus(Explainer):
    name = "gradcampp"
    label = "Grad-CAM++"

    def __init__(self, eps: float = 0.0, **cfg) -> None:
        super().__init__(**cfg)
        self.eps = float(eps)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        features, grads = gradients_at_layer(self, model, images, targets)
        grads_sq = grads.square()
        denominator = 2 * grads_sq + features.sum(dim=(2, 3), keepdim=True) * grads_sq * grads + self.eps
        contributes = (grads > 0) & (denominator != 0)
        alpha = torch.where(contributes, grads_sq / torch.where(contributes, denominator, 1.0), 0.0)
        weights = (grads.clamp_min(0) * alpha).sum(dim=(2, 3))
        return weighted_channel_sum(weights, features)
