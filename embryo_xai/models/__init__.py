"""Models: ``create_model(name, num_classes=16, **cfg)`` builds any registered model."""

from embryo_xai.models import abn, bcnn, brnpa, cnn, ibp  # noqa: F401  (registers the models)
from embryo_xai.models.registry import (
    create_model,
    create_model_for_weights,
    list_models,
    model_label,
    register_model,
)

__all__ = ["create_model", "create_model_for_weights", "list_models", "model_label", "register_model"]
