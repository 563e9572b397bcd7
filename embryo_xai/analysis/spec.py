"""Names, directions and orders the whole analysis shares (paper §2.2, §4; DESIGN §6–7).

Kept in one place so tables, ranks, Kendall tau and figures can never disagree on
which metrics are "lower is better" or in which order approaches are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

# Metric keys as written by the faithfulness runs, in the paper's Table 1 order.
METRICS: tuple[str, ...] = ("dauc", "iauc", "dc", "ic", "iic", "ad", "add")
METRIC_LABELS: dict[str, str] = {m: m.upper() for m in METRICS}
HIGHER_IS_BETTER: dict[str, bool] = {
    "dauc": False,
    "iauc": True,
    "dc": True,
    "ic": True,
    "iic": True,
    "ad": False,
    "add": True,
}
# Paper §4: metrics that mask salient areas vs metrics that reveal them.
GROUPS: dict[str, tuple[str, ...]] = {
    "Mask": ("dauc", "dc", "add"),
    "Highlight": ("iauc", "ic", "ad", "iic"),
    "All": METRICS,
}
# IIC is binary per image, so it gives no ranking on a single image (paper §4).
EMBEDDING_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m != "iic")

MODEL_LABELS: dict[str, str] = {
    "cnn": "CNN",
    "abn": "ABN",
    "ibp": "InterByParts",
    "bcnn": "B-CNN",
    "brnpa": "BR-NPA",
}
METHOD_LABELS: dict[str, str] = {
    "am": "AM",
    "gradcampp": "Grad-CAM++",
    "rise": "RISE",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "attention": "-",
}
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
        model = MODEL_LABELS.get(self.model, self.model)
        method = METHOD_LABELS.get(self.method, self.method)
        if self.method == ATTENTION_METHOD:
            return model
        if self.model == "cnn":
            return method
        return f"{model} / {method}"

    @property
    def sort_key(self) -> tuple[int, str, str]:
        key = (self.model, self.method)
        position = APPROACH_ORDER.index(key) if key in APPROACH_ORDER else len(APPROACH_ORDER)
        return position, self.model, self.method


def model_key(name: str) -> str:
    """Registry key of a model from either its key or its display name ("B-CNN" -> "bcnn")."""
    lowered = str(name).strip().lower()
    for key, label in MODEL_LABELS.items():
        if lowered in (key, label.lower()):
            return key
    return lowered


def method_key(name: str) -> str:
    """Registry key of a method from either its key or its display name ("-" -> "attention")."""
    lowered = str(name).strip().lower()
    if lowered in ("", "-", "nan", "none"):
        return ATTENTION_METHOD
    for key, label in METHOD_LABELS.items():
        if lowered in (key, label.lower()):
            return key
    return lowered


def metric_key(name: str) -> str:
    return str(name).strip().lower()


def signed_for_higher_better(metric: str) -> float:
    """+1 for higher-is-better metrics, −1 otherwise: multiply to make "larger" mean "better"."""
    return 1.0 if HIGHER_IS_BETTER[metric] else -1.0
