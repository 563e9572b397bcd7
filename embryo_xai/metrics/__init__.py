"""Faithfulness metrics of saliency maps (paper §2.2, DESIGN §6).

``faithfulness(model, images, maps, targets=None, metrics=..., **cfg)`` returns per-image
values; :class:`FaithfulnessMetric` and the one-metric classes (``DAUC`` … ``ADD``)
accumulate them as ``torchmetrics`` states.
"""

from embryo_xai.metrics.config import (
    HIGHER_IS_BETTER,
    METRIC_GROUPS,
    METRIC_NAMES,
    PACKAGE_CONVENTIONS,
    FaithfulnessConfig,
    check_metric_names,
    package_config,
)
from embryo_xai.metrics.engine import FaithfulnessResult, faithfulness, forward_passes_per_image, pearson
from embryo_xai.metrics.metric import AD, ADD, DAUC, DC, IAUC, IC, IIC, METRIC_CLASSES, FaithfulnessMetric

__all__ = [
    "AD", "ADD", "DAUC", "DC", "HIGHER_IS_BETTER", "IAUC", "IC", "IIC", "METRIC_CLASSES", "METRIC_GROUPS",
    "METRIC_NAMES", "PACKAGE_CONVENTIONS", "FaithfulnessConfig", "FaithfulnessMetric", "FaithfulnessResult",
    "check_metric_names", "faithfulness", "forward_passes_per_image", "package_config", "pearson",
]
