"""BR-NPA, Bilinear Representative Non-Parametric Attention (Gomez et al. 2021).

No attention parameter: P representative vectors are picked from the (high-resolution,
output stride 8 by default) layer4 map. Each pixel starts with its feature norm as score;
P times: the seed is the highest-score pixel, the attention map is the (non-negative)
cosine similarity ``sim`` of every pixel to the seed normalised to sum 1, the representative
is the attention-weighted sum of the features, and the scores are damped as in the authors'
code, ``score <- (1 - sim) * score``: the seed (sim 1) drops to 0 and pixels alike to it
drop in proportion, so the next seed lies elsewhere. The P vectors are concatenated ->
dropout -> linear.

Distillation, as the authors trained the 56x56 model: a frozen low-resolution BR-NPA
(output stride 32) loaded from a Lightning checkpoint (``teacher_ckpt``) is the teacher, and
loss = (1 - a) * CE + a * T^2 * KL(softmax(teacher / T) || softmax(student / T)) with
``a = distill_interp`` and ``T = distill_temperature`` (their ``kl_interp`` and ``kl_temp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.models.backbone import ResNetBackbone, feature_norm
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.checkpoint import load_classifier
from embryo_xai.models.registry import register_model


class Representatives(NamedTuple):
    vectors: torch.Tensor  # (B, P, C) refined representative vectors
    maps: torch.Tensor  # (B, P, h, w) attention maps, non-negative, each sums to 1
    seeds: torch.Tensor  # (B, P) flat pixel index of each seed


def representative_vectors(features: torch.Tensor, num_parts: int) -> Representatives:
    """BR-NPA's parameter-free attention, batched (gather by argmax index; loop over parts only)."""
    batch, channels, height, width = features.shape
    pixels = features.flatten(2).transpose(1, 2)  # (B, N, C)
    unit_pixels = F.normalize(pixels, dim=2)
    scores = pixels.detach().norm(dim=2)  # selection only: no gradient through argmax
    vectors, maps, seeds = [], [], []
    for _ in range(num_parts):
        seed = scores.argmax(dim=1)  # (B,)
        seed_vector = unit_pixels.gather(1, seed.view(batch, 1, 1).expand(-1, 1, channels))  # (B, 1, C)
        similarity = (unit_pixels @ seed_vector.transpose(1, 2)).squeeze(2).clamp_min(0)  # (B, N)
        attention = similarity / similarity.sum(1, keepdim=True).clamp_min(1e-12)
        vectors.append(torch.bmm(attention.unsqueeze(1), pixels).squeeze(1))
        maps.append(attention.view(batch, height, width))
        seeds.append(seed)
        scores = scores * (1 - similarity.detach())  # selection only, like the scores
    return Representatives(torch.stack(vectors, 1), torch.stack(maps, 1), torch.stack(seeds, 1))


def load_teacher(path: str | Path, num_classes: int) -> nn.Module:
    """The frozen teacher: the classifier of a training checkpoint of ours, predicting the student's classes."""
    return load_classifier(path, num_classes=num_classes)[0].requires_grad_(False)


@register_model("brnpa", label="BR-NPA")
class BRNPA(EmbryoClassifier):
    has_attention = True

    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, num_parts: int = 3, output_stride: int = 8,
                 teacher_ckpt: str | None = None, distill_temperature: float = 1.0,
                 distill_interp: float = 1.0) -> None:
        super().__init__()
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        if not 0 <= distill_interp <= 1:
            raise ValueError(f"distill_interp must be in [0, 1], got {distill_interp}")
        self.num_parts = num_parts
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=output_stride)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_parts * self.backbone.num_features, num_classes)
        self.distill_temperature = distill_temperature
        self.distill_interp = distill_interp
        # Kept out of the module tree: not trained, not saved in the student's checkpoint.
        self._teacher = [load_teacher(teacher_ckpt, num_classes)] if teacher_ckpt else []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        self.require_map_size(features, x, stride=self.backbone.output_stride, min_pixels=self.num_parts)
        return features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head(representative_vectors(features, self.num_parts))

    def _head(self, representatives: Representatives) -> torch.Tensor:
        return self.fc(self.dropout(representatives.vectors.flatten(1)))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(x)
        representatives = representative_vectors(features, self.num_parts)
        outputs = {"logits": self._head(representatives), "attention_maps": representatives.maps,
                   "seeds": representatives.seeds, "features": features}
        if self._teacher:
            teacher = self._teacher[0].to(x.device)
            with torch.no_grad():
                outputs["teacher_logits"] = teacher(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(outputs["logits"], targets)
        if "teacher_logits" not in outputs:
            return {"loss": ce, "ce": ce}
        temperature = self.distill_temperature
        distill = F.kl_div(F.log_softmax(outputs["logits"] / temperature, dim=1),
                           F.log_softmax(outputs["teacher_logits"] / temperature, dim=1),
                           reduction="batchmean", log_target=True) * temperature**2
        interp = self.distill_interp
        return {"loss": (1 - interp) * ce + interp * distill, "ce": ce, "distill": distill}

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """First attention map times the feature norm: (B, h, w), 56x56 at 448 with output stride 8."""
        features = self.forward_features(x)
        return representative_vectors(features, self.num_parts).maps[:, 0] * feature_norm(features)
