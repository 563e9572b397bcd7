"""torchmetrics wrappers: per-image values kept in ``cat`` list states so DDP gathers them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from embryo_xai.metrics.config import METRIC_NAMES, FaithfulnessConfig, check_metric_names
from embryo_xai.metrics.engine import faithfulness


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


class _SingleFaithfulnessMetric(FaithfulnessMetric):
    """One metric; ``compute()`` returns its mean as a tensor."""

    metric_name: str = ""

    def __init__(self, **cfg) -> None:
        super().__init__(self.metric_name, **cfg)

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()[self.metric_name]


def _single(name: str, doc: str) -> type[_SingleFaithfulnessMetric]:
    return type(name.upper(), (_SingleFaithfulnessMetric,), {"metric_name": name, "__doc__": doc})


DAUC = _single("dauc", "Deletion AUC (lower is better).")
IAUC = _single("iauc", "Insertion AUC (higher is better).")
DC = _single("dc", "Deletion correlation (higher is better).")
IC = _single("ic", "Insertion correlation (higher is better).")
IIC = _single("iic", "Increase in confidence (higher is better).")
AD = _single("ad", "Average drop (lower is better).")
ADD = _single("add", "Average drop in deletion (higher is better).")
METRIC_CLASSES: dict[str, type[FaithfulnessMetric]] = {
    cls.metric_name: cls for cls in (DAUC, IAUC, DC, IC, IIC, AD, ADD)
}
