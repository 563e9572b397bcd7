"""Ablation-CAM (Desai 2020): w_k = (S − S_k) / S, the relative drop of the class score when
channel k of the target layer is zeroed; map = relu(Σ_k w_k A_k).

S is the class **logit** by default, as in the paper (the score y^c before the softmax) and
pytorch-grad-cam; ``score="prob"`` uses the softmax probability. S = 0 (possible for logits) is
replaced by a tiny value; for a negative logit the ratio flips sign, as in both references.

Only the layers after the target layer are re-run on the ablated activations (the head alone when
the layer is where ``forward_features`` ends), packed in chunks of ``batch_size`` (image, channel)
rows. An all-zero channel is skipped: zeroing it changes nothing, its weight is exactly 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, chunk_bounds, weighted_channel_sum
from embryo_xai.explainers.registry import register_explainer


@register_explainer
class AblationCAM(Explainer):
    name = "ablationcam"
    label = "Ablation-CAM"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        # float32 even under bf16 autocast: the weights are small score differences, which bf16
        # rounds away; the re-runs are head-only, so this costs little
        with torch.inference_mode(), torch.autocast(images.device.type, enabled=False):
            acts = self.layer_activations(model, images)
            targets = self.resolve_targets(acts.logits, targets)
            features = acts.features
            original = self.class_score(acts.logits, targets)
            ablated = original[:, None].repeat(1, features.shape[1])
            image_rows, channel_rows = features.flatten(2).ne(0).any(dim=2).nonzero(as_tuple=True)
            for start, stop in chunk_bounds(len(image_rows), self.chunk_size(images)):
                rows, channels = image_rows[start:stop], channel_rows[start:stop]
                maps = features[rows]
                maps[torch.arange(len(rows), device=maps.device), channels] = 0
                logits = self.logits_from_layer(model, acts, maps, images[rows])
                ablated[rows, channels] = self.class_score(logits, targets[rows])
            safe = torch.where(original == 0, torch.finfo(original.dtype).tiny, original)
            return weighted_channel_sum((original[:, None] - ablated) / safe[:, None], features)
