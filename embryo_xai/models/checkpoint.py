"""Checkpoints of our training runs (``EmbryoLitModule``): the one place that reads them.

- :func:`read_checkpoint`: the file, loaded with ``weights_only=True`` (no code runs from it), or one
  line saying why it is not a training checkpoint of ours;
- :func:`load_classifier`: the trained classifier, rebuilt from ``hyper_parameters["net"]`` and given
  the state dict (the explained model, a distillation teacher);
- :func:`load_backbone`: a model's backbone started from a checkpoint's (warm start, the module's
  ``backbone_init``); :func:`backbone_state` for anything else that needs only the backbone weights.

A Lightning checkpoint of ours holds the classifier's weights under ``net.`` in ``state_dict`` and its
``create_model`` arguments in ``hyper_parameters["net"]`` (docs/architecture.md, run directory).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from embryo_xai.data.stages import NUM_CLASSES
from embryo_xai.errors import CheckpointError, one_line
from embryo_xai.models.base import EmbryoClassifier
from embryo_xai.models.registry import create_model_for_weights

#: ``create_model`` arguments that older checkpoints may still carry and no model takes any more:
#: IBP's own warm start (``init_from``), replaced by the module's ``backbone_init``.
RETIRED_NET_ARGS = ("init_from",)


def _load(path: Path, map_location: str | torch.device) -> object:
    """``torch.load(weights_only=True)`` with the two ways it fails for a user in one line each."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected a .ckpt written by "
                              "`python -m embryo_xai.train`, e.g. <run dir>/checkpoints/best.ckpt)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not ours"
        # torch.load's own message is a wall of unpickler text: one line says what the file is not
        raise CheckpointError(f"{path} is corrupt, truncated or not a PyTorch checkpoint ({one_line(error)})") from None
    return checkpoint


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """An ``EmbryoLitModule`` checkpoint, loaded with weights_only=True; a missing, corrupt or foreign
    file raises a CheckpointError in one line."""
    path = Path(path)
    checkpoint = _load(path, map_location)
    net_cfg = (checkpoint.get("hyper_parameters") or {}).get("net") if isinstance(checkpoint, dict) else None
    if not isinstance(net_cfg, dict) or "name" not in net_cfg or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not an embryo_xai training checkpoint: expected 'state_dict' and "
                              "hyper_parameters['net'] with the model's create_model arguments")
    return checkpoint


def state_dict_under(checkpoint: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a checkpoint's state_dict under ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu",
                    num_classes: int | None = None) -> tuple[EmbryoClassifier, dict]:
    """(the trained classifier in eval mode, its ``create_model`` arguments) of a checkpoint.

    The net is rebuilt with its initial-weight sources switched off (``create_model_for_weights``: no
    ImageNet download, no teacher read), then takes the checkpoint's weights; every key must match.
    ``num_classes``: the classes the caller needs (a distillation teacher: the student's)."""
    checkpoint = read_checkpoint(path, map_location)
    net_cfg = checkpoint["hyper_parameters"]["net"]
    classes = checkpoint["hyper_parameters"].get("num_classes", NUM_CLASSES)
    if num_classes is not None and classes != num_classes:
        raise CheckpointError(f"{path} predicts {classes} classes, not the {num_classes} needed here")
    kwargs = {key: value for key, value in net_cfg.items() if key not in RETIRED_NET_ARGS}
    model = create_model_for_weights(num_classes=classes, **kwargs)  # the checkpoint holds the weights
    missing, unexpected = model.load_state_dict(state_dict_under(checkpoint, "net."), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match model {net_cfg['name']!r}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.eval(), net_cfg


def backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone weights of a checkpoint's model (``net.backbone.*``), with that prefix removed.
    Only the state dict is needed: the backbones of all our models share their parameter names."""
    path = Path(path)
    checkpoint = _load(path, "cpu")  # no hyper_parameters needed: a bare {"state_dict": ...} will do
    has_state = isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
    state = state_dict_under(checkpoint, "net.backbone.") if has_state else {}
    if not state:
        raise CheckpointError(f"{path} holds no backbone weights (no state_dict entry starts with 'net.backbone.')")
    return state


def load_backbone(model: EmbryoClassifier, path: str | Path) -> None:
    """Warm start: ``model.backbone`` takes the backbone weights of a trained model of ours (any model,
    whatever its output stride; the same timm ``backbone`` name is needed), then the model's
    :meth:`~EmbryoClassifier.on_backbone_loaded` hook runs. Other parameters keep their initial values."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise CheckpointError(f"{type(model).__name__} has no `backbone` to start from {path}")
    state = backbone_state(path)
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # same names, other shapes
        missing, unexpected = [str(error).splitlines()[-1].strip()], []
    if missing or unexpected:
        raise CheckpointError(f"{path}: backbone does not match {type(model).__name__}'s "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}); same `backbone` name needed")
    model.on_backbone_loaded()
