"""Model registry: a name in a config is all a user needs (timm-style)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/function decorator adding a model builder under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 16, **cfg) -> nn.Module:
    """Build a registered model: ``create_model("brnpa", backbone="resnet18")``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, **cfg)


#: ``create_model`` arguments that only say where a model's *initial* weights come from (ImageNet, a
#: teacher for distillation, a trained CNN), with the value that turns each off.
INITIAL_WEIGHTS_ARGS = {"pretrained": False, "teacher_ckpt": None, "init_from": None}


def create_model_for_weights(name: str, num_classes: int = 16, **cfg) -> nn.Module:
    """Build a model that is about to receive trained weights (from a checkpoint): its initial-weight
    sources are switched off, so rebuilding never downloads ImageNet weights or reads a teacher or
    CNN checkpoint that may no longer exist."""
    cfg = {key: INITIAL_WEIGHTS_ARGS.get(key, value) for key, value in cfg.items()}
    return create_model(name, num_classes=num_classes, **cfg)
