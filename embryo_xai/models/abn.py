"""Attention Branch Network (Fukui et al. 2019) on a timm ResNet (docs/architecture.md).

The attention branch reads layer3, so its map has layer3's resolution (input / 16:
14x14 at 224, 28x28 at 448). As in Fukui et al.'s code, the map comes from a 3x3
convolution (K -> 1, padding 1) of the branch's K class maps; ``map_kernel_size=1`` gives a
1x1 one. The perception branch feeds ``x * map + x`` to layer4.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.models.backbone import ClassifierHead, ResNetBackbone
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import register_model


def _stride_one_copy(layer: nn.Module) -> nn.Module:
    """Deep copy of a ResNet stage with every stride set to 1.

    Works for any timm ResNet block type (BasicBlock, Bottleneck, avg-pool
    downsampling of the "d" variants): the convolutions keep their weights (so a
    pretrained layer4 initialises the branch) and strided pooling becomes identity.
    """
    layer = copy.deepcopy(layer)
    for name, module in list(layer.named_modules()):
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and module.stride not in (1, (1, 1)):
            parent_name, _, child_name = name.rpartition(".")
            setattr(layer.get_submodule(parent_name) if parent_name else layer, child_name, nn.Identity())
    return layer


@register_model("abn", label="ABN")
class ABN(EmbryoClassifier):
    """Attention branch: stride-1 copy of layer4 -> BN -> 1x1 conv to K -> BN -> ReLU;
    map = sigmoid(BN(3x3 conv K->1)); attention logits = GAP(1x1 conv K->K).
    Perception branch: ``x * map + x`` -> layer4 -> GAP -> dropout -> fc.
    """

    has_attention = True

    def __init__(self, num_classes: int = 16, backbone: str = "resnet50", pretrained: bool = False,
                 dropout: float = 0.0, map_kernel_size: int = 3) -> None:
        super().__init__()
        if map_kernel_size % 2 != 1:
            raise ValueError(f"map_kernel_size must be odd (the map keeps layer3's size), got {map_kernel_size}")
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, output_stride=32)
        channels = self.backbone.num_features
        self.attention_block = _stride_one_copy(self.backbone.layer4)
        self.attention_bn = nn.BatchNorm2d(channels)
        self.attention_conv = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)
        self.attention_conv_bn = nn.BatchNorm2d(num_classes)
        self.map_conv = nn.Conv2d(num_classes, 1, kernel_size=map_kernel_size, padding=map_kernel_size // 2,
                                  bias=False)
        self.map_bn = nn.BatchNorm2d(1)
        self.attention_logit_conv = nn.Conv2d(num_classes, num_classes, kernel_size=1, bias=False)
        self.head = ClassifierHead(channels, num_classes, dropout)

    def on_backbone_loaded(self) -> None:
        # the attention branch is a stride-1 copy of layer4: it starts from the loaded layer4 too
        self.attention_block.load_state_dict(self.backbone.layer4.state_dict())

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        layer3 = self.backbone.forward_until(x, "layer3")
        self.require_map_size(layer3, x, stride=16)
        branch = self.attention_bn(self.attention_block(layer3))
        branch = F.relu(self.attention_conv_bn(self.attention_conv(branch)))
        attention_map = torch.sigmoid(self.map_bn(self.map_conv(branch)))
        attention_logits = F.adaptive_avg_pool2d(self.attention_logit_conv(branch), 1).flatten(1)
        perception = self.backbone.layer4(layer3 * attention_map + layer3)
        return {"logits": self.head(perception), "attention_logits": attention_logits,
                "attention_map": attention_map.squeeze(1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_train(x)["logits"]

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(outputs["logits"], targets)
        ce_attention = F.cross_entropy(outputs["attention_logits"], targets)
        return {"loss": ce + ce_attention, "ce": ce, "ce_attention": ce_attention}

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """ABN's own map in (0, 1), (B, H/16, W/16); Fukui et al. do not weight it."""
        return self.forward_train(x)["attention_map"]
