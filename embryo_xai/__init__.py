"""embryo_xai: attention models, post-hoc explainers and faithfulness metrics for
human embryo development-stage recognition (Gomez, Fréour, Mouchère 2022)."""

__version__ = "0.1.0"

from embryo_xai.utils import register_resolvers  # noqa: E402 - the configs' resolvers, before any config loads

register_resolvers()
