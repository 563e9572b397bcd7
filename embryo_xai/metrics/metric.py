"""The metrics as ``torchmetrics`` classes, each registered with its label, direction and family.

Per-image values are kept in ``cat`` list states so DDP gathers them. These classes are the
library interface (a user's own loop); the faithfulness entry point and callback call the same
engine function, :func:`embryo_xai.metrics.faithfulness`, directly, because they also write every
image's row as soon as its batch is scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from embryo_xai.metrics.config import METRIC_NAMES, FaithfulnessConfig
from embryo_xai.metrics.engine import faithfulness
from embryo_xai.metrics.registry import check_metric_names, register_metric


class FaithfulnessMetric(Metric):
    """Accumulates per-image faithfulness values over batches.

    ``update(model, images, maps, targets)`` scores a batch (targets = batch labels, used
    only when ``explained_class="label"``); ``compute()`` returns ``{name: mean}`` over the
    images where the metric is defined (NaN rows skipped); ``per_image()`` the gathered
    values, ``valid()`` the map-validity flags and ``undefined_counts()`` the NaN counts.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, metrics: str | Sequence[str] = METRIC_NAMES, **cfg) -> None:
        super().__init__()
        self.names = check_metric_names(metrics)
        self.config = FaithfulnessConfig.from_kwargs(**cfg)
        self.engine_cfg = cfg
        for name in self.names:
            self.add_state(f"values_{name}", default=[], dist_reduce_fx="cat")
        self.add_state("map_valid", default=[], dist_reduce_fx="cat")

    def update(self, model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
               targets: torch.Tensor | None = None) -> None:
        if self.config.explained_class == "label" and targets is None:
            raise ValueError("explained_class='label' needs the labels as targets")
        explained = targets if self.config.explained_class == "label" else None
        result = faithfulness(model, images, maps, explained, self.names, **self.engine_cfg)
        for name in self.names:
            getattr(self, f"values_{name}").append(result[name].to(self.device))
        self.map_valid.append(result.valid.to(self.device))

    def per_image(self) -> dict[str, torch.Tensor]:
        """All per-image values seen so far (gathered across ranks after a sync)."""
        return {name: dim_zero_cat(getattr(self, f"values_{name}")) for name in self.names}

    def valid(self) -> torch.Tensor:
        return dim_zero_cat(self.map_valid)

    def undefined_counts(self) -> dict[str, int]:
        """Images whose value is NaN (invalid map, constant map for DC/IC, c_I <= 0 for AD/ADD)."""
        return {name: int(values.isnan().sum()) for name, values in self.per_image().items()}

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: values.nanmean() for name, values in self.per_image().items()}


class SingleFaithfulnessMetric(FaithfulnessMetric):
    """One metric; ``compute()`` returns its mean as a tensor. Subclasses declare (and register with
    ``@register_metric``) ``metric_name``, ``label``, ``higher_is_better`` and ``group``; a metric the
    engine does not compute itself also implements ``values(inputs: MetricInputs) -> (B,) tensor``
    and says how many model forwards it runs per image (``forwards_per_image``, or ``forwards(config)``
    when that depends on the options)."""

    metric_name: str = ""
    label: str = ""
    group: str | None = None
    forwards_per_image: int = 1

    @classmethod
    def forwards(cls, config: FaithfulnessConfig) -> int:
        """Model forwards per image of a plug-in metric under ``config``."""
        return cls.forwards_per_image

    def __init__(self, **cfg) -> None:
        super().__init__(self.metric_name, **cfg)

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()[self.metric_name]


def _builtin(name: str, label: str, higher_is_better: bool, group: str, doc: str, **extra: object) -> type:
    """Declare and register one of the paper's metrics (computed by the engine's shared passes)."""
    attributes = {"metric_name": name, "label": label, "higher_is_better": higher_is_better, "group": group,
                  "__doc__": doc, **extra}
    return register_metric(type(name.upper(), (SingleFaithfulnessMetric,), attributes))


DAUC = _builtin("dauc", "DAUC", False, "mask", "Deletion AUC: the score's curve as the most salient blocks are "
                "blacked out (lower is better).")
IAUC = _builtin("iauc", "IAUC", True, "highlight", "Insertion AUC: the score's curve as the most salient blocks "
                "are revealed on a blur (higher is better).")
DC = _builtin("dc", "DC", True, "mask", "Deletion correlation: Pearson of score drops and deleted saliency per "
              "step (higher is better).")
IC = _builtin("ic", "IC", True, "highlight", "Insertion correlation: Pearson of score gains and inserted saliency "
              "per step (higher is better).")
# 0 or 1 per image: it ranks no approaches on one image (left out of the per-image embedding)
IIC = _builtin("iic", "IIC", True, "highlight", "Increase in confidence: 1 if the map-highlighted image scores "
               "higher (higher is better).", binary=True)
AD = _builtin("ad", "AD", False, "highlight", "Average drop: relative score drop on the map-highlighted image "
              "(lower is better).")
ADD = _builtin("add", "ADD", True, "mask", "Average drop in deletion: relative score drop with the "
               "map-highlighted part removed (higher is better).")
METRIC_CLASSES: dict[str, type[FaithfulnessMetric]] = {
    cls.metric_name: cls for cls in (DAUC, IAUC, DC, IC, IIC, AD, ADD)
}
