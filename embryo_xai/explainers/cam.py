"""CAM (Zhou 2016): the linear classifier's weights of the explained class applied to the maps.

Only defined for a linear head right after global average pooling (``model.head.fc``) and the
layer that feeds it. Not ReLU'd, as in the original: negative evidence stays visible.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, weighted_channel_sum
from embryo_xai.explainers.registry import register_explainer


@register_explainer
class CAM(Explainer):
    name = "cam"
    label = "CAM"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        fc = getattr(getattr(model, "head", None), "fc", None)
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"CAM needs a linear head after global average pooling (model.head.fc); "
                             f"{type(model).__name__} has none: use gradcam or gradcampp")
        with torch.inference_mode():
            acts = self.layer_activations(model, images)
            if not acts.head_only or fc.in_features != acts.features.shape[1]:
                raise ValueError(f"CAM needs the layer that feeds the pooled linear head; "
                                 f"{self.target_layer!r} is not it; use gradcam or gradcampp there")
            targets = self.resolve_targets(acts.logits, targets)
            return weighted_channel_sum(fc.weight[targets], acts.features, relu=False)
