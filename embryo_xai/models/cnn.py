"""Baseline CNN: backbone -> global average pool -> dropout -> linear (docs/architecture.md)."""

from __future__ import annotations

import torch

from embryo_xai.models.backbone import ClassifierHead, ResNetBackbone
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import register_model


@register_model("cnn", label="CNN")
class CNN(EmbryoClassifier):
    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, output_stride: int = 32) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=output_stride)
        self.head = ClassifierHead(self.backbone.num_features, num_classes, dropout)

    # timm-style split: post-hoc explainers hook ``backbone.layer4`` and re-run only the head.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
