"""Score-CAM (Wang 2020): every channel, upsampled to the input and min-max normalised, masks the
input; the class score of each masked input weights its channel; map = relu(Σ_k w_k A_k).

``weighting`` picks how the scores become weights:

- ``"softmax"`` (default, the paper's Algorithm 1 and pytorch-grad-cam): w = softmax over channels
  of the class **logit** of each masked input. Its default score is the logit: a softmax of
  probabilities (all in [0, 1]) is nearly uniform and turns the map into AM.
- ``"raw"`` (the authors' released code): w = class **probability** of each masked input, used as is,
  no channel softmax. Its default score is the probability.

``score`` overrides the default of either weighting. A constant channel (all zeros, the usual case
after a ReLU) gives an all-zero mask, i.e. the black image. With ``softmax`` it still counts in the
denominator: the black image is scored once per call instead of once per such channel, so skipping
them is exact. With ``raw`` it is skipped as in the authors' code (weight 0; an all-zero channel
contributes w·0 = 0 anyway).

``align_corners``: the upsampling grid. The paper does not say; True (default) is pytorch-grad-cam's
``nn.UpsamplingBilinear2d``, False the authors' ``F.interpolate``. On small maps it matters: the
channel softmax of well-separated logits is peaked, and a half-cell shift of the masks changes
which channels win. The masked forward passes of all (image, channel) pairs are packed into chunks
of ``batch_size`` images.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from embryo_xai.explainers.base import Explainer, chunk_bounds, upsample, weighted_channel_sum
from embryo_xai.explainers.registry import register_explainer

#: weighting -> the score its source uses (the default when ``score`` is not given)
WEIGHTINGS = {"softmax": "logit", "raw": "probability"}


@register_explainer
class ScoreCAM(Explainer):
    name = "scorecam"
    label = "Score-CAM"

    def __init__(self, weighting: str = "softmax", score: str | None = None, align_corners: bool = True,
                 skip_constant_channels: bool = True, **cfg) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {tuple(WEIGHTINGS)}, got {weighting!r}")
        super().__init__(score=WEIGHTINGS[weighting] if score is None else score, **cfg)
        self.weighting = weighting
        self.align_corners = bool(align_corners)
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
            scores = torch.zeros(varying.shape, device=images.device)  # raw: skipped channels weigh 0
            if self.weighting == "softmax" and not bool(varying.all()):
                black_logits = model(torch.zeros_like(images[:1])).expand(len(images), -1)
                scores[:] = self.class_score(black_logits, targets)[:, None]
            image_rows, channel_rows = varying.nonzero(as_tuple=True)
            for start, stop in chunk_bounds(len(image_rows), self.chunk_size(images)):
                rows, channels = image_rows[start:stop], channel_rows[start:stop]
                masks = upsample(features[rows, channels], images.shape[-2:], self.align_corners)
                low = masks.flatten(1).amin(dim=1)[:, None, None]
                high = masks.flatten(1).amax(dim=1)[:, None, None]
                masks = (masks - low) / (high - low).clamp_min(1e-8)
                logits = model(images[rows] * masks[:, None])
                scores[rows, channels] = self.class_score(logits, targets[rows])
            weights = scores.softmax(dim=1) if self.weighting == "softmax" else scores
            return weighted_channel_sum(weights, features)
