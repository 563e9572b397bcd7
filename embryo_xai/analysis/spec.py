"""Names, directions and orders the whole analysis shares (paper §2.2, §4).

Nothing is declared here: labels, directions and families come from the registrations (each
metric class, explainer and model declares its own), so tables, ranks, Kendall tau, figures and
prose can never disagree with the code that computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embryo_xai.explainers import explainer_class, explainer_label, list_explainers
from embryo_xai.metrics import METRIC_NAMES, higher_is_better, list_metrics, metric_class, metric_group, metric_label
from embryo_xai.models import list_models, model_label

#: Display names as the registrations declare them (re-exported: the analysis reads labels here).
__all__ = ["Approach", "METRICS", "directions_sentence", "embedding_metrics", "higher_is_better", "list_metrics",
           "method_key", "method_label", "metric_groups", "metric_key", "metric_label", "model_key", "model_label",
           "signed_for_higher_better"]
method_label = explainer_label


def metric_groups(metrics: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Paper §4's families among ``metrics``: those that mask salient areas and those that reveal them,
    per-image binary metrics last (the paper's Highlight = {IAUC, IC, AD, IIC})."""
    families = {"Mask": "mask", "Highlight": "highlight"}
    ordered = sorted(metrics, key=lambda m: bool(getattr(metric_class(m), "binary", False)))
    return {title: tuple(m for m in ordered if metric_group(m) == key) for title, key in families.items()} | {
        "All": tuple(metrics)}


def embedding_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """Metrics that rank approaches on a single image (IIC is binary per image, so it cannot: §4)."""
    return tuple(m for m in metrics if not getattr(metric_class(m), "binary", False))


def directions_sentence(metrics: Sequence[str]) -> str:
    """"Lower is better for DAUC and AD, higher for the others." from the metrics' declarations."""
    lower = [metric_label(m) for m in metrics if not higher_is_better(m)]
    if not lower:
        return "Higher is better for every metric."
    listed = lower[0] if len(lower) == 1 else ", ".join(lower[:-1]) + f" and {lower[-1]}"
    return f"Lower is better for {listed}, higher for the others."


#: The paper's seven metrics (Table 1's columns when nothing else was scored).
METRICS: tuple[str, ...] = METRIC_NAMES
# The paper's Table 1 order; approaches not listed here follow, alphabetically.
APPROACH_ORDER: tuple[tuple[str, str], ...] = (
    ("cnn", "am"),
    ("cnn", "gradcampp"),
    ("cnn", "rise"),
    ("cnn", "scorecam"),
    ("cnn", "ablationcam"),
    ("abn", "attention"),
    ("ibp", "attention"),
    ("bcnn", "attention"),
    ("brnpa", "attention"),
)
ATTENTION_METHOD = "attention"
TYPE_ATTENTION = "Attention"
TYPE_POSTHOC = "Post-Hoc"


@dataclass(frozen=True)
class Approach:
    """One explained model: a model plus the method that produced its saliency maps."""

    model: str
    method: str

    @property
    def type(self) -> str:
        return TYPE_ATTENTION if self.method == ATTENTION_METHOD else TYPE_POSTHOC

    @property
    def label(self) -> str:
        """Short name as in the paper's Table 2: the method for CNN post-hoc, the model for attention."""
        model = model_label(self.model)
        method = explainer_label(self.method)
        if self.method == ATTENTION_METHOD:
            return model
        if self.model == "cnn":
            return method
        return f"{model} / {method}"

    @property
    def is_control(self) -> bool:
        """A control pseudo-explainer (random, centre prior, edges): a yardstick, not one of the study's approaches."""
        return self.method in list_explainers() and bool(getattr(explainer_class(self.method), "control", False))

    @property
    def sort_key(self) -> tuple[int, str, str]:
        key = (self.model, self.method)
        position = APPROACH_ORDER.index(key) if key in APPROACH_ORDER else len(APPROACH_ORDER)
        return position, self.model, self.method


def model_key(name: str) -> str:
    """Registry key of a model from either its key or its display name ("B-CNN" -> "bcnn")."""
    lowered = str(name).strip().lower()
    for key in list_models():
        if lowered in (key, model_label(key).lower()):
            return key
    return lowered


def method_key(name: str) -> str:
    """Registry key of a method from either its key or its display name ("-" -> "attention")."""
    lowered = str(name).strip().lower()
    if lowered in ("", "-", "nan", "none"):
        return ATTENTION_METHOD
    for key in list_explainers():
        if lowered in (key, explainer_label(key).lower()):
            return key
    return lowered


def metric_key(name: str) -> str:
    return str(name).strip().lower()


def signed_for_higher_better(metric: str) -> float:
    """+1 for higher-is-better metrics, −1 otherwise: multiply to make "larger" mean "better"."""
    return 1.0 if higher_is_better(metric) else -1.0
