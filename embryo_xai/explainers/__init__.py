"""Saliency methods behind one interface: ``create_explainer(name, **cfg)(model, images, targets)``."""

from __future__ import annotations

from embryo_xai.explainers.ablationcam import AblationCAM
from embryo_xai.explainers.am import ActivationMap
from embryo_xai.explainers.attention import AttentionMap
from embryo_xai.explainers.base import Explainer
from embryo_xai.explainers.cam import CAM
from embryo_xai.explainers.gradcam import GradCAM
from embryo_xai.explainers.gradcampp import GradCAMPlusPlus
from embryo_xai.explainers.rise import RISE
from embryo_xai.explainers.scorecam import ScoreCAM

_EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (ActivationMap, CAM, GradCAM, GradCAMPlusPlus, ScoreCAM, AblationCAM, RISE, AttentionMap)
}


def list_explainers() -> list[str]:
    return sorted(_EXPLAINERS)


def create_explainer(name: str, **cfg) -> Explainer:
    """Build a registered explainer: ``create_explainer("scorecam", batch_size=32)``.

    Options that a method does not read (``target_layer`` for RISE/attention) are accepted so one
    Hydra ``method`` group can hold every method."""
    if name not in _EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known explainers: {', '.join(list_explainers())}")
    return _EXPLAINERS[name](**cfg)


__all__ = ["Explainer", "create_explainer", "list_explainers", "ActivationMap", "CAM", "GradCAM",
           "GradCAMPlusPlus", "ScoreCAM", "AblationCAM", "RISE", "AttentionMap"]
