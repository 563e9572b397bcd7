"""Score-CAM (Wang 2020): every channel, upsampled to the input and min-max normalised, masks the
input; the channel weights are the softmax over channels of the class scores of the masked
inputs; map = relu(Σ_k w_k A_k).

The softmax over channels follows pytorch-grad-cam (it applies it to raw logits, ``score="logit"``);
our default score is the softmax probability (DESIGN §2). A constant channel (all zeros, the
usual case after a ReLU) gives an all-zero mask, i.e. the black image: its score is computed once
per call instead of once per channel, so skipping those channels is exact — the softmax still
counts them. The masked forward passes of all (image, channel) pairs are packed into chunks of
``batch_size`` images.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, chunk_bounds, upsample, weighted_channel_sum


class ScoreCAM(Explainer):
    name = "scorecam"

    def __init__(self, skip_constant_channels: bool = True, **cfg) -> None:
        super().__init__(**cfg)
        self.skip_constant_channels = skip_constant_channels

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            acts = self.layer_activations(model, images)
            targets = self.resolve_targets(acts.logits, targets)
            features = acts.features.float()  # masks made in float32 also under bf16 autocast
            flat = features.flatten(2)
            varying = flat.amax(dim=2) > flat.amin(dim=2)
            if not self.skip_constant_channels:
                varying = torch.ones_like(varying)
            scores = torch.zeros(varying.shape, device=images.device)
            if not bool(varying.all()):
                black_logits = model(torch.zeros_like(images[:1])).expand(len(images), -1)
                scores[:] = self.class_score(black_logits, targets)[:, None]
            image_rows, channel_rows = varying.nonzero(as_tuple=True)
            for start, stop in chunk_bounds(len(image_rows), self.batch_size):
                rows, channels = image_rows[start:stop], channel_rows[start:stop]
                masks = upsample(features[rows, channels], images.shape[-2:])
                low = masks.flatten(1).amin(dim=1)[:, None, None]
                high = masks.flatten(1).amax(dim=1)[:, None, None]
                masks = (masks - low) / (high - low).clamp_min(1e-8)
                logits = model(images[rows] * masks[:, None])
                scores[rows, channels] = self.class_score(logits, targets[rows])
            return weighted_channel_sum(scores.softmax(dim=1), features)
