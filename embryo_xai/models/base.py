"""Shared base class of every classifier: logits out, its own training loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.errors import CheckpointError


def load_lightning_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint read with ``weights_only=True`` (no code runs from the file)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler raises several types; all mean the same to a user
        raise ValueError(f"cannot read checkpoint {path} with weights_only=True ({error}); its "
                         "hyper_parameters must be plain containers, not OmegaConf objects") from error


def state_dict_under(checkpoint: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a checkpoint's state_dict under ``prefix``, with the prefix removed."""
    state = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items()
             if key.startswith(prefix)}
    if not state:
        raise ValueError(f"checkpoint has no state_dict entries starting with {prefix!r}")
    return state


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

    def init_backbone_from(self, path: str | Path) -> None:
        """Start ``self.backbone`` from the backbone of a trained model's Lightning checkpoint
        (any model of ours: the backbones share their parameter names whatever the output stride)."""
        backbone = getattr(self, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"{type(self).__name__} has no `backbone` to start from {path}")
        state = state_dict_under(load_lightning_checkpoint(path), "net.backbone.")
        try:
            missing, unexpected = backbone.load_state_dict(state, strict=False)
        except RuntimeError as error:  # same names, other shapes
            missing, unexpected = [str(error).splitlines()[-1].strip()], []
        if missing or unexpected:
            raise ValueError(f"{path}: backbone does not match {type(self).__name__}'s "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]}); same `backbone` name needed")
