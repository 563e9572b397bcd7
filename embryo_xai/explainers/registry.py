"""The explainer registry: a method's ``name`` in a config is all a user needs (``method=scorecam``)."""

from __future__ import annotations

from typing import TypeVar

from embryo_xai.explainers.base import Explainer

_EXPLAINERS: dict[str, type[Explainer]] = {}
E = TypeVar("E", bound=type[Explainer])


def register_explainer(cls: E) -> E:
    """Class decorator: makes ``cls`` available as ``create_explainer(cls.name)``, ``method=<name>``
    in the configs, and under ``cls.label`` in the report."""
    if not cls.name or not cls.label:
        raise ValueError(f"{cls.__name__} needs a `name` (registry key) and a `label` (display name)")
    if _EXPLAINERS.get(cls.name, cls) is not cls:
        raise ValueError(f"explainer name {cls.name!r} is taken by {_EXPLAINERS[cls.name].__name__}")
    _EXPLAINERS[cls.name] = cls
    return cls


def list_explainers() -> list[str]:
    return sorted(_EXPLAINERS)


def explainer_class(name: str) -> type[Explainer]:
    if name not in _EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known explainers: {', '.join(list_explainers())}")
    return _EXPLAINERS[name]


def create_explainer(name: str, **cfg) -> Explainer:
    """Build a registered explainer: ``create_explainer("scorecam", batch_size=32)``.

    Options that a method does not read (``target_layer`` for RISE/attention) are accepted so one
    Hydra ``method`` group can hold every method."""
    return explainer_class(name)(**cfg)


def explainer_label(name: str) -> str:
    """Display name of a method (the key itself for one that is not registered)."""
    return _EXPLAINERS[name].label if name in _EXPLAINERS else name
