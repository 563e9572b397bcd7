"""Model registry: a name in a config is all a user needs (timm-style)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}
_LABELS: dict[str, str] = {}


def register_model(name: str, label: str | None = None) -> Callable[[Builder], Builder]:
    """Class/function decorator adding a model builder under ``name`` (``model.net.name`` in the configs),
    shown as ``label`` (default: the name) in the report."""

    def wrap(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        _LABELS[name] = label or name
        if isinstance(builder, type):  # a model class knows its name (EmbryoClassifier.model_name)
            builder.model_name = name
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_label(name: str) -> str:
    """Display name of a model (the key itself for one that is not registered)."""
    return _LABELS.get(name, name)


def create_model(name: str, num_classes: int = 16, **cfg) -> nn.Module:
    """Build a registered model: ``create_model("brnpa", backbone="resnet18")``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, **cfg)


#: ``create_model`` arguments that only say where a model's *initial* weights come from (ImageNet, a
#: teacher for distillation), with the value that turns each off. (A warm start from another run's
#: backbone is the module's ``backbone_init``, outside ``create_model``'s arguments.)
INITIAL_WEIGHTS_ARGS = {"pretrained": False, "teacher_ckpt": None}


def create_model_for_weights(name: str, num_classes: int = 16, **cfg) -> nn.Module:
    """Build a model that is about to receive trained weights (from a checkpoint): its initial-weight
    sources are switched off, so rebuilding never downloads ImageNet weights or reads a teacher
    checkpoint that may no longer exist."""
    cfg = {key: INITIAL_WEIGHTS_ARGS.get(key, value) for key, value in cfg.items()}
    return create_model(name, num_classes=num_classes, **cfg)
