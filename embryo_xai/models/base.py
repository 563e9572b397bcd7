"""Shared base class of every classifier: logits out, its own training loss."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbryoClassifier(nn.Module):
    """``forward(x) -> logits``. Training goes through ``forward_train`` + ``loss`` so a
    model with auxiliary outputs (ABN's attention branch, IBP's shaping loss) keeps
    them out of the plain forward used by explainers and metrics."""

    #: True for models whose ``attention(x)`` is their own saliency map.
    has_attention: bool = False

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self(x)}

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns a dict whose ``"loss"`` entry is optimised; the rest are logged."""
        ce = F.cross_entropy(outputs["logits"], targets)
        return {"loss": ce, "ce": ce}

    def attention(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} has no attention map; use a post-hoc method")
