"""Bilinear attention CNN as in the paper authors' code (after Hu & Qi 2019 / WS-DAN).

A residual block on the layer4 features, then a 1x1 conv to P+1 maps and a ReLU. Each of
the first P maps weights the features, which are average-pooled and concatenated
(bilinear attention pooling) into one P*C vector for the linear classifier. As in the
authors' code the last map is not used by the classifier. WS-DAN's extras (32 maps,
centre loss, attention crop/drop) are not implemented.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.resnet import BasicBlock

from embryo_xai.models.backbone import ResNetBackbone, feature_norm
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import register_model


def bilinear_attention_pool(features: torch.Tensor, maps: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Average over pixels of each map times the features: (B,C,h,w), (B,P,h,w) -> (B, P*C).

    ``normalize`` (WS-DAN's option, off by default as in the paper authors' B-CNN): signed square
    root then L2 normalisation of the pooled vector, scaled by sqrt(P*C) so each component has unit
    RMS whatever the width (WS-DAN's fixed x100 sits near that for ResNet-50). On the demo it
    trained worse than the plain pooling with AdamW, so it stays an option."""
    pooled = torch.einsum("bphw,bchw->bpc", maps, features) / (features.shape[-2] * features.shape[-1])
    pooled = pooled.flatten(1)
    if normalize:
        pooled = torch.sign(pooled) * torch.sqrt(pooled.abs() + 1e-12)
        pooled = torch.nn.functional.normalize(pooled, dim=1) * pooled.shape[1] ** 0.5
    return pooled


@register_model("bcnn", label="B-CNN")
class BCNN(EmbryoClassifier):
    has_attention = True

    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, num_parts: int = 3, output_stride: int = 32, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        self.num_parts = num_parts
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=output_stride)
        channels = self.backbone.num_features
        self.attention_block = BasicBlock(channels, channels)
        self.attention_conv = nn.Conv2d(channels, num_parts + 1, kernel_size=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_parts * channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        self.require_map_size(features, x, stride=self.backbone.output_stride)
        return features

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:
        """The P+1 non-negative maps (B, P+1, h, w)."""
        return torch.relu(self.attention_conv(self.attention_block(features)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head(features, self.attention_maps(features))

    def _head(self, features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(bilinear_attention_pool(features, maps[:, : self.num_parts], self.normalize)))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(x)
        maps = self.attention_maps(features)
        return {"logits": self._head(features, maps), "attention_maps": maps, "features": features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the P maps the classifier uses, times the feature norm: (B, h, w)."""
        outputs = self.forward_train(x)
        return outputs["attention_maps"][:, : self.num_parts].mean(1) * feature_norm(outputs["features"])
