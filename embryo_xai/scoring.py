"""Which class is explained and how it is scored: one rule for explainers, metric engine and evaluator.

The metrics score the explained class by its softmax probability (the paper); each explainer by
the score of its own paper (the CAMs: the class logit; RISE: the probability). They are separate
options, but they are computed by this one object, so "the score" means the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCORES = ("probability", "logit")
_ALIASES = {"prob": "probability", "probabilities": "probability", "logits": "logit"}
EXPLAINED_CLASSES = ("prediction", "label")


def score_kind(name: str) -> str:
    """``"probability"`` or ``"logit"`` from any accepted spelling (``prob`` included)."""
    kind = _ALIASES.get(str(name).lower(), str(name).lower())
    if kind not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)} (or 'prob'), got {name!r}")
    return kind


@dataclass(frozen=True)
class ClassScore:
    """``score(logits, classes)``: each row's class score, float32 even under bf16 autocast.

    ``explained(logits, labels)``: the class to explain, the prediction on the original image
    (the paper) or, with ``explained_class="label"``, the ground-truth label.
    """

    kind: str = "probability"
    explained_class: str = "prediction"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", score_kind(self.kind))
        if self.explained_class not in EXPLAINED_CLASSES:
            raise ValueError(f"explained_class must be one of {', '.join(EXPLAINED_CLASSES)}, "
                             f"got {self.explained_class!r}")

    def __call__(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # bf16 logits under autocast: score arithmetic stays float32
        values = logits.softmax(dim=1) if self.kind == "probability" else logits
        return values.gather(1, classes[:, None])[:, 0]

    def explained(self, logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.explained_class == "label":
            if labels is None:
                raise ValueError("explained_class='label' needs the labels")
            return labels
        return logits.argmax(dim=1)
