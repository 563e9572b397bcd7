"""Saliency methods behind one interface: ``create_explainer(name, **cfg)(model, images, targets)``.

Each method is one file whose class is decorated with :func:`register_explainer`; importing the
files here registers the built-in ones.
"""

from __future__ import annotations

from embryo_xai.explainers.ablationcam import AblationCAM
from embryo_xai.explainers.am import ActivationMap
from embryo_xai.explainers.attention import AttentionMap
from embryo_xai.explainers.base import Explainer
from embryo_xai.explainers.cam import CAM
from embryo_xai.explainers.controls import GaussianPrior, RandomMap, SobelEdges
from embryo_xai.explainers.gradcam import GradCAM
from embryo_xai.explainers.gradcampp import GradCAMPlusPlus
from embryo_xai.explainers.registry import (
    create_explainer,
    explainer_class,
    explainer_label,
    list_explainers,
    register_explainer,
)
from embryo_xai.explainers.rise import RISE
from embryo_xai.explainers.scorecam import ScoreCAM

__all__ = ["Explainer", "create_explainer", "explainer_class", "explainer_label", "list_explainers",
           "register_explainer", "ActivationMap", "CAM", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "AblationCAM",
           "RISE", "AttentionMap", "RandomMap", "GaussianPrior", "SobelEdges"]
