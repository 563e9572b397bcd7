"""Shared fixtures: a tiny data set in the real format, with the public release's quirks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import compose_config, make_tiny_dataset, tiny_train_overrides

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("embryo")
    return root, make_tiny_dataset(root)


@pytest.fixture(scope="session")
def tiny_train_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished training run dir (best.ckpt, config, test_metrics.json) of the CNN."""
    from embryo_xai.train import train

    out = tmp_path_factory.mktemp("train_run")
    cfg = compose_config("train", tiny_train_overrides(tiny_dataset[0]), out)
    train(cfg)
    return Path(cfg.paths.output_dir)
