"""Interpretability By Parts (Huang & Li 2020, "region grouping").

Follows the authors' code (github.com/zxhuang1698/interpretability-by-parts) as the embryo paper's
authors vendored it: the grouping sits on layer4.

- **Assignment** of every layer4 pixel x to K learnable part centres c_k:
  ``a_k(x) = softmax_k(-||x - c_k||^2 / s_k)``, ``s_k = sigmoid(smooth_factor_k)`` with
  ``smooth_factor`` initialised at 0 (``s_k = 0.5``): on raw ResNet features the squared distances
  are large, so assignments start near-hard. Centres start as the authors': Kaiming-normal, clamped
  to >= 1e-5.
- **Region feature** of part k: the assignment-weighted mean of the pixels minus c_k, L2-normalised
  (the authors also divide by sqrt(s_k / 2), which the normalisation cancels).
- **Head**: the K region features go, each alone, through 1x1 bottleneck blocks (the authors' 4
  "post" blocks); an attention net (2 more 1x1 bottlenecks -> 1x1 conv to 1 -> BN -> ReLU) scores
  each part, a softmax across parts turns the scores into weights, and the attention-weighted SUM
  of the processed part features -> BN -> (dropout) -> linear gives the logits.
- **Shaping loss** (their Beta prior on part occurrence): the occurrence of part k in image b is
  the max over pixels of its assignment map blurred with the authors' 5x5 kernel (radius 2, std
  0.4; a "valid" convolution as theirs, except on maps under 8x8: :func:`part_occurrence`).
  Sorted over the batch, the occurrences o_(1) <= ... <= o_(B) are compared with the quantiles
  q_i = F^-1((i - 0.5) / B) of Beta(alpha, beta) in log space:
  ``L_shape = mean_{i,k} |log(o_(i),k + eps) - log(q_i + eps)|``, eps = 1e-5. Beta(1, 0.001) puts
  almost all its mass at 1: every part should occur in (almost) every image.
  Loss = CE + 0.5 x L_shape.
- **Saliency** ``attention(x)``: the part-attention-weighted sum of the foreground parts'
  assignment maps, times the feature norm. One of the K parts is the background. The authors'
  code names none (K counts it; the model learns which part it is), so it is found per image as
  the part with the largest mean assignment on the feature map's outer ring (the embryo is
  centred, the well and medium surround it); ``background_part=k`` fixes it instead.
- **Warm start**: the authors start IBP from a fine-tuned backbone; here that is the module's
  ``backbone_init`` (a trained CNN's checkpoint, ``models/checkpoint.load_backbone``), as for every model.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.special import betaincinv

from embryo_xai.models.backbone import ResNetBackbone, feature_norm
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import register_model


@functools.lru_cache(maxsize=32)
def beta_quantiles(count: int, alpha: float, beta: float) -> torch.Tensor:
    """Quantiles F^-1((i - 0.5) / count), i = 1..count, of Beta(alpha, beta) (float64, ascending).
    Cached: a training run sees one or two batch sizes."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.from_numpy(betaincinv(alpha, beta, levels.numpy()))


def gaussian_kernel(radius: int = 2, std: float = 0.4) -> torch.Tensor:
    """The authors' blur kernel: (2r+1)^2 weights exp(-d^2 / (2 std^2)), d the distance to the
    centre, normalised to sum 1 (float64). At radius 2, std 0.4 the centre keeps 84 %."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) / (2 * std**2))
    return weights / weights.sum()


def part_occurrence(assignments: torch.Tensor, radius: int = 2, std: float = 0.4) -> torch.Tensor:
    """Occurrence of each part in each image, (B, K, h, w) -> (B, K): max over pixels of its map
    blurred with :func:`gaussian_kernel`.

    The authors blur with a "valid" convolution (no padding): the ``radius`` pixels along the border
    cannot hold the max. That is kept where those border pixels are at most half of each side (their
    14x14 maps, ours at 448 px). On smaller maps few pixels would be left (9 of 49 at 7x7, none at
    4x4) and the prior would ask every part to fill those, so there the map is replicate-padded by
    ``radius`` first and every pixel counts (at 4x4 with a valid blur, training held the assignments
    near uniform: occurrences stayed ~1/3)."""
    if radius == 0:
        return assignments.flatten(2).amax(dim=2)
    size, parts = 2 * radius + 1, assignments.shape[1]
    if min(assignments.shape[-2:]) < 4 * radius:
        assignments = F.pad(assignments, (radius,) * 4, mode="replicate")
    kernel = gaussian_kernel(radius, std).to(assignments).expand(parts, 1, size, size)
    return F.conv2d(assignments, kernel, groups=parts).flatten(2).amax(dim=2)


def shaping_loss(occurrences: torch.Tensor, alpha: float = 1.0, beta: float = 0.001, eps: float = 1e-5) -> torch.Tensor:
    """L1 distance in log space between each part's occurrences sorted over the batch and the
    Beta(alpha, beta) quantiles, averaged over batch and parts (module docstring). (B, K) -> scalar."""
    quantiles = beta_quantiles(occurrences.shape[0], alpha, beta).to(occurrences).unsqueeze(1)
    return ((occurrences.sort(dim=0).values + eps).log() - (quantiles + eps).log()).abs().mean()


class Bottleneck1x1(nn.Module):
    """ResNet bottleneck whose convolutions are all 1x1, on part features laid out as a (B, C, K, 1)
    image, so each part is processed alone (the authors' post-processing and attention blocks).
    The last BN starts at 0 (each block starts as its shortcut), as theirs."""

    def __init__(self, channels: int, width: int, project: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[-1].weight)
        # the authors' first post block has a projection shortcut although its sizes match
        self.shortcut = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                      nn.BatchNorm2d(channels)) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@register_model("ibp", label="InterByParts")
class IBP(EmbryoClassifier):
    has_attention = True

    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, num_parts: int = 3, shaping_weight: float = 0.5,
                 prior_alpha: float = 1.0, prior_beta: float = 0.001, blur_radius: int = 2, blur_std: float = 0.4,
                 post_blocks: int = 4, attention_blocks: int = 2, background_part: int | None = None,
                 output_stride: int = 32) -> None:
        super().__init__()
        if num_parts < 2:
            raise ValueError(f"num_parts must be >= 2 (one of them is the background), got {num_parts}")
        if background_part is not None and not 0 <= background_part < num_parts:
            raise ValueError(f"background_part must be null or in [0, {num_parts}), got {background_part}")
        self.num_parts = num_parts
        self.shaping_weight = shaping_weight
        self.prior = (prior_alpha, prior_beta)
        self.blur = (blur_radius, blur_std)
        self.background_part = background_part
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=output_stride)
        channels = self.backbone.num_features
        width = max(1, channels // 4)  # the authors' bottleneck width (512 for ResNet-50's 2048)
        self.centres = nn.Parameter(nn.init.kaiming_normal_(torch.empty(num_parts, channels)).clamp_(min=1e-5))
        self.smooth_factor = nn.Parameter(torch.zeros(num_parts))
        self.post_blocks = nn.Sequential(*(Bottleneck1x1(channels, width, project=i == 0) for i in range(post_blocks)))
        # (the authors' score conv has a bias, which the BN right after it cancels: left out)
        self.attention_net = nn.Sequential(*(Bottleneck1x1(channels, width) for _ in range(attention_blocks)),
                                           nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU())
        for module in (*self.post_blocks.modules(), *self.attention_net.modules()):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm1d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        self.require_map_size(features, x, stride=self.backbone.output_stride)
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
            return torch.softmax(-squared_distance / torch.sigmoid(self.smooth_factor).view(1, -1, 1, 1), dim=1)

    def region_features(self, features: torch.Tensor, assignments: torch.Tensor) -> torch.Tensor:
        """Assignment-weighted mean residual to each centre, L2-normalised: (B, K, C), float32."""
        with torch.autocast(features.device.type, enabled=False):
            weights = assignments.float().flatten(2)
            mean_features = torch.einsum("bkn,bcn->bkc", weights, features.float().flatten(2))
            mean_features = mean_features / weights.sum(2, keepdim=True).clamp_min(1e-5)
            return F.normalize(mean_features - self.centres, dim=2)

    def _head(self, region_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, C) region features -> logits (B, classes) and part attention (B, K), summing to 1."""
        parts = region_features.transpose(1, 2).unsqueeze(3)  # (B, C, K, 1), the authors' layout
        part_attention = torch.softmax(self.attention_net(parts), dim=2)  # across parts
        pooled = (self.post_blocks(parts) * part_attention).sum(dim=(2, 3))  # weighted sum: (B, C)
        return self.fc(self.dropout(self.bn(pooled))), part_attention.flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head(self.region_features(features, self.assign(features)))[0]

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(x)
        assignments = self.assign(features)
        logits, part_attention = self._head(self.region_features(features, assignments))
        return {"logits": logits, "assignments": assignments, "part_attention": part_attention, "features": features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(outputs["logits"], targets)
        assignments = outputs["assignments"]
        with torch.autocast(assignments.device.type, enabled=False):  # log of occurrences near 1: float32
            shaping = shaping_loss(part_occurrence(assignments.float(), *self.blur), *self.prior)
        return {"loss": ce + self.shaping_weight * shaping, "ce": ce, "shaping": shaping}

    def background(self, assignments: torch.Tensor) -> torch.Tensor:
        """Index of the background part of each image, (B,): ``background_part`` if set, else the part
        with the largest mean assignment on the outer ring of the feature map."""
        batch, _, height, width = assignments.shape
        if self.background_part is not None:
            return torch.full((batch,), self.background_part, dtype=torch.long, device=assignments.device)
        ring = torch.ones(height, width, dtype=torch.bool, device=assignments.device)
        ring[1:-1, 1:-1] = False
        return assignments[:, :, ring].mean(dim=2).argmax(dim=1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Part-attention-weighted sum of the foreground parts' assignment maps, times the feature
        norm: (B, h, w)."""
        outputs = self.forward_train(x)
        assignments = outputs["assignments"]
        foreground = F.one_hot(self.background(assignments), self.num_parts) == 0  # (B, K)
        weights = outputs["part_attention"] * foreground
        return torch.einsum("bk,bkhw->bhw", weights.to(assignments.dtype), assignments) * feature_norm(
            outputs["features"].float())
