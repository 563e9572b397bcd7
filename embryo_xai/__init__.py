"""embryo_xai: attention models, post-hoc explainers and faithfulness metrics for
human embryo development-stage recognition (Gomez, Fréour, Mouchère 2022)."""

__version__ = "0.1.0"
