"""The metric registry: each metric class declares its key, label, direction and family once.

Everything downstream (name checks, the engine's plug-in metrics, the report's tables, ranks and
Kendall tau, its prose) reads these declarations, so a new metric is one class in one file.
"""

from __future__ import annotations

from typing import TypeVar

_METRICS: dict[str, type] = {}
M = TypeVar("M", bound=type)
#: The two families found by the paper (§4): masking vs highlighting salient areas.
GROUPS = ("mask", "highlight")


def register_metric(cls: M) -> M:
    """Class decorator for a metric class with ``metric_name``, ``label``, ``higher_is_better`` and
    ``group`` (one of :data:`GROUPS` or None). A metric that the engine does not compute itself
    implements ``values(inputs: MetricInputs) -> (B,) tensor`` (see ``embryo_xai.metrics.engine``)."""
    name = getattr(cls, "metric_name", "")
    if not name or not getattr(cls, "label", "") or not isinstance(getattr(cls, "higher_is_better", None), bool):
        raise ValueError(f"{cls.__name__} needs `metric_name`, `label` and a bool `higher_is_better`")
    if getattr(cls, "group", None) not in (*GROUPS, None):
        raise ValueError(f"{cls.__name__}.group must be one of {GROUPS} or None, got {cls.group!r}")
    if name != name.lower() or _METRICS.get(name, cls) is not cls:
        raise ValueError(f"metric name {name!r} must be lower case and not yet taken")
    _METRICS[name] = cls
    return cls


def list_metrics() -> tuple[str, ...]:
    """Registered metric keys, in registration order (the paper's Table 1 order first)."""
    return tuple(_METRICS)


def metric_class(name: str) -> type:
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(_METRICS)}")
    return _METRICS[name]


def metric_label(name: str) -> str:
    return _METRICS[name].label if name in _METRICS else name.upper()


def higher_is_better(name: str) -> bool:
    return metric_class(name).higher_is_better


def metric_group(name: str) -> str | None:
    return metric_class(name).group


def check_metric_names(metrics: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Normalise a metric selection; unknown names raise with the list of valid ones."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    names = tuple(str(name).lower() for name in names)
    unknown = [name for name in names if name not in _METRICS]
    if unknown or not names:
        given = unknown or "(none given)"
        raise ValueError(f"unknown metric(s) {given}; known metrics: {', '.join(_METRICS)}")
    return tuple(dict.fromkeys(names))
