"""Interpretability By Parts (Huang & Li 2020, "region grouping"), DESIGN §4.

Each layer4 pixel x is softly assigned to K learnable part centres c_k:
``a_k(x) = softmax_k(-||x - c_k||^2 / s_k)`` with a learnable per-part scale s_k
(``exp`` of a parameter, initialised at the channel count so the first logits are O(1)).
A part's region feature is the assignment-weighted mean residual ``x - c_k``,
L2-normalised; a shared linear scorer + sigmoid gives each part an attention weight;
the weighted part features are concatenated -> BN -> dropout -> linear.

Shaping loss (the authors' Beta prior on part occurrence): the occurrence of part k in
image b is the max over pixels of its Gaussian-blurred assignment map. Over a batch of
B images, the sorted occurrences o_(1) <= ... <= o_(B) of each part are compared with
the prior's quantiles q_i = F^-1((i - 0.5) / B) of Beta(alpha, beta):

    L_shape = mean_k mean_i (o_(i),k - q_i)^2

which is the squared 2-Wasserstein distance between the batch's empirical occurrence
distribution and the prior discretised at B quantiles: it is exactly zero when the
occurrences are those quantiles. Beta(1, 0.001) puts almost all its mass at 1, so the
loss asks every part to be present in (almost) every image.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.special import betaincinv

from embryo_xai.models.abn import require_map_size
from embryo_xai.models.backbone import ResNetBackbone, feature_norm
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import register_model


@functools.lru_cache(maxsize=32)
def beta_quantiles(count: int, alpha: float, beta: float) -> torch.Tensor:
    """Quantiles F^-1((i - 0.5) / count), i = 1..count, of Beta(alpha, beta) (float64, ascending).
    Cached: a training run sees one or two batch sizes."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.from_numpy(betaincinv(alpha, beta, levels.numpy()))


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, K, h, w) maps with replicate padding (no dark border)."""
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = maps.shape[1]
    padded = F.pad(maps, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def part_occurrence(assignments: torch.Tensor, blur_sigma: float = 1.0) -> torch.Tensor:
    """Occurrence of each part in each image: max over pixels of its blurred map, (B,K,h,w) -> (B,K)."""
    return gaussian_blur(assignments, blur_sigma).flatten(2).amax(dim=2)


def shaping_loss(occurrences: torch.Tensor, alpha: float = 1.0, beta: float = 0.001) -> torch.Tensor:
    """Squared 2-Wasserstein distance between each part's occurrences over the batch
    and Beta(alpha, beta), averaged over parts (see the module docstring). (B, K) -> scalar."""
    quantiles = beta_quantiles(occurrences.shape[0], alpha, beta).to(occurrences)
    return (occurrences.sort(dim=0).values - quantiles.unsqueeze(1)).pow(2).mean()


@register_model("ibp")
class IBP(EmbryoClassifier):
    has_attention = True

    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, num_parts: int = 3, shaping_weight: float = 0.5,
                 prior_alpha: float = 1.0, prior_beta: float = 0.001, blur_sigma: float = 1.0,
                 saliency_part: int = 0, output_stride: int = 32, init_from: str | None = None) -> None:
        super().__init__()
        if not 0 <= saliency_part < num_parts:
            raise ValueError(f"saliency_part must be in [0, {num_parts}), got {saliency_part}")
        self.num_parts = num_parts
        self.shaping_weight = shaping_weight
        self.prior = (prior_alpha, prior_beta)
        self.blur_sigma = blur_sigma
        self.saliency_part = saliency_part
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=output_stride)
        if init_from:
            # Start from a trained CNN (the authors initialise IBP from a fine-tuned backbone).
            self.init_backbone_from(init_from)
        channels = self.backbone.num_features
        # Post-ReLU features are non-negative: start the centres in that orthant.
        self.centres = nn.Parameter(torch.rand(num_parts, channels))
        self.log_scale = nn.Parameter(torch.full((num_parts,), math.log(channels)))
        self.part_scorer = nn.Linear(channels, 1)
        self.bn = nn.BatchNorm1d(num_parts * channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_parts * channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        require_map_size(features, x, "ibp", stride=self.backbone.output_stride)
        return features

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Soft assignment of every pixel to the parts, (B, C, h, w) -> (B, K, h, w), sums to 1 over K.

        Always in float32: |f|² + |c|² − 2 f·c cancels catastrophically in bf16 (autocast), which
        flips assignments; with K parts this costs next to nothing."""
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            centre_norms = self.centres.pow(2).sum(1).view(1, -1, 1, 1)
            squared_distance = (features.pow(2).sum(1, keepdim=True) + centre_norms
                                - 2 * torch.einsum("bchw,kc->bkhw", features, self.centres)).clamp_min(0)
            return torch.softmax(-squared_distance / self.log_scale.exp().view(1, -1, 1, 1), dim=1)

    def _head(self, features: torch.Tensor, assignments: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):  # residuals to the centres: float32 too
            weights = assignments.float().flatten(2)
            mean_features = torch.einsum("bkn,bcn->bkc", weights, features.float().flatten(2))
            mean_features = mean_features / weights.sum(2, keepdim=True).clamp_min(1e-5)
            region_features = F.normalize(mean_features - self.centres, dim=2)
        part_attention = torch.sigmoid(self.part_scorer(region_features))
        return self.fc(self.dropout(self.bn((part_attention * region_features).flatten(1))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head(features, self.assign(features))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(x)
        assignments = self.assign(features)
        return {"logits": self._head(features, assignments), "assignments": assignments, "features": features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(outputs["logits"], targets)
        shaping = shaping_loss(part_occurrence(outputs["assignments"], self.blur_sigma), *self.prior)
        return {"loss": ce + self.shaping_weight * shaping, "ce": ce, "shaping": shaping}

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Assignment map of part ``saliency_part`` times the feature norm: (B, h, w)."""
        outputs = self.forward_train(x)
        return outputs["assignments"][:, self.saliency_part] * feature_norm(outputs["features"])
