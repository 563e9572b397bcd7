"""Faithfulness metrics of saliency maps (paper §2.2; docs/architecture.md, "Metrics").

``faithfulness(model, images, maps, targets=None, metrics=..., **cfg)`` returns per-image
values; :class:`FaithfulnessMetric` and the one-metric classes (``DAUC`` … ``ADD``)
accumulate them as ``torchmetrics`` states.
"""

from embryo_xai.metrics.config import METRIC_NAMES, PACKAGE_CONVENTIONS, FaithfulnessConfig, package_config
from embryo_xai.metrics.engine import (
    FaithfulnessResult,
    MetricInputs,
    faithfulness,
    forward_passes_per_image,
    pearson,
)
from embryo_xai.metrics.metric import (
    AD,
    ADD,
    DAUC,
    DC,
    IAUC,
    IC,
    IIC,
    METRIC_CLASSES,
    FaithfulnessMetric,
    SingleFaithfulnessMetric,
)
from embryo_xai.metrics.registry import (
    check_metric_names,
    higher_is_better,
    list_metrics,
    metric_class,
    metric_group,
    metric_label,
    register_metric,
)
from embryo_xai.metrics.road import ROAD, ROADLeRF, ROADMoRF  # noqa: F401  (registers ROAD)

__all__ = [
    "AD", "ADD", "DAUC", "DC", "IAUC", "IC", "IIC", "METRIC_CLASSES", "METRIC_NAMES", "PACKAGE_CONVENTIONS",
    "FaithfulnessConfig", "FaithfulnessMetric", "FaithfulnessResult", "MetricInputs", "SingleFaithfulnessMetric",
    "check_metric_names", "faithfulness", "forward_passes_per_image", "higher_is_better", "list_metrics",
    "metric_class", "metric_group", "metric_label", "package_config", "pearson", "register_metric",
]
