"""Shared base class of every classifier: logits out, its own training loss."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbryoClassifier(nn.Module):
    """``forward(x) -> logits``. Training goes through ``forward_train`` + ``loss`` so a
    model with auxiliary outputs (ABN's attention branch, IBP's shaping loss) keeps
    them out of the plain forward used by explainers and metrics."""

    #: True for models whose ``attention(x)`` is their own saliency map.
    has_attention: bool = False
    #: The registry name (``model.net.name``), set by ``register_model``; errors name the model by it.
    model_name: str = ""

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self(x)}

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns a dict whose ``"loss"`` entry is optimised; the rest are logged."""
        ce = F.cross_entropy(outputs["logits"], targets)
        return {"loss": ce, "ce": ce}

    def attention(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} has no attention map; use a post-hoc method")

    def on_backbone_loaded(self) -> None:
        """Runs after a warm start gave ``self.backbone`` trained weights (``checkpoint.load_backbone``):
        a model whose other parts copy the backbone when built (ABN's attention branch) copies them again."""

    def require_map_size(self, features: torch.Tensor, image: torch.Tensor, stride: int, min_side: int = 2,
                         min_pixels: int = 1) -> None:
        """Fail early, naming the sizes, when a feature map is too small to carry a spatial map.

        A 1x1 map (e.g. a 32 px input at stride 32) trains silently but every saliency is a constant,
        so each model that explains itself with a map calls this on that map's features."""
        height, width = features.shape[-2:]
        if height >= min_side and width >= min_side and height * width >= min_pixels:
            return
        side = max(min_side, math.ceil(math.sqrt(min_pixels)))
        raise ValueError(
            f"{self.model_name}: the feature map is {height}x{width} for a {image.shape[-2]}x{image.shape[-1]} "
            f"input (stride {stride}), but the model needs at least {min_side}x{min_side} and {min_pixels} "
            f"pixels; use an input of at least {side * stride} px per side or a smaller output_stride"
        )
