"""timm ResNet backbone exposing its stages, with input normalisation as first layer.

``pretrained=True`` loads timm's ImageNet weights (the paper study's start). Where they
cannot be fetched (no network, nothing cached) the build ends in one line, a
:class:`PretrainedWeightsUnavailable`, naming the cache and ``model.net.pretrained=false``.
"""

from __future__ import annotations

import logging

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.errors import UsageError, one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


class Normalize(nn.Module):
    """Models see pixels in [0, 1]; normalisation belongs to the model (docs/architecture.md, Conventions)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PretrainedWeightsUnavailable(UsageError):
    """timm's ImageNet weights could not be downloaded nor found in the local cache."""


def weights_cache() -> str:
    """Where timm (through huggingface_hub) looks for downloaded weights: ``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def create_timm_resnet(name: str, pretrained: bool, **kwargs) -> nn.Module:
    """``timm.create_model``; a failed weight download (OSError covers the hub's HTTP, offline-mode and
    not-in-cache errors as well as urllib's) becomes one line instead of a wall of HTTP traces."""
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # without network, its retry warnings would bury the one line below
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except OSError as error:
        source = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) or name
        raise PretrainedWeightsUnavailable(
            f"cannot load the ImageNet-pretrained weights of {name} ({source}; {one_line(error)}); "
            f"without network, copy them into the Hugging Face cache ({weights_cache()}; set by HF_HUB_CACHE "
            f"or HF_HOME) from a machine that has run `python -c \"import timm; timm.create_model('{name}', "
            f"pretrained=True)\"`, or train from scratch with model.net.pretrained=false"
        ) from error
    finally:
        hub_logger.setLevel(level)


class ResNetBackbone(nn.Module):
    """Any timm ResNet, split into ``normalize -> stem -> layer1..layer4``.

    ``output_stride`` 32 gives 14x14 maps at 448 input, 8 gives 56x56 (dilated
    layer3/layer4, as BR-NPA's high-resolution variant).
    """

    def __init__(self, name: str = "resnet50", pretrained: bool = False, output_stride: int = 32) -> None:
        super().__init__()
        if not name.startswith(("resnet", "resnext", "wide_resnet", "seresnet", "resnetrs")):
            raise ValueError(f"backbone {name!r} is not a timm ResNet (e.g. resnet18, resnet50)")
        net = create_timm_resnet(name, pretrained, num_classes=0, global_pool="", output_stride=output_stride)
        self.name = name
        self.output_stride = output_stride
        self.normalize = Normalize()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = {s: info["num_chs"] for s, info in zip(STAGE_NAMES, net.feature_info[1:])}
        self.num_features = self.channels["layer4"]

    def forward_until(self, x: torch.Tensor, stage: str = "layer4") -> torch.Tensor:
        """Run from pixels up to and including ``stage``."""
        x = self.stem(self.normalize(x))
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            if name == stage:
                return x
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGE_NAMES}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_until(x, "layer4")


class ClassifierHead(nn.Module):
    """Global average pool -> dropout -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1)
        return self.fc(self.dropout(pooled))


def feature_norm(features: torch.Tensor) -> torch.Tensor:
    """L2 norm over channels: (B, C, h, w) -> (B, h, w). Used to weight attention saliency."""
    return features.norm(dim=1)
