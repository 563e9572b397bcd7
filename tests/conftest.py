"""Shared fixtures: a tiny data set in the real format, with the public release's quirks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embryo_xai.data.stages import PHASES

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]


def write_frame(path: Path, value: int, size: int = 72, quality: int = 90) -> None:
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, (size, size)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path, quality=quality)


def make_tiny_dataset(root: Path, videos: int = 6, frames: int = 18, size: int = 72,
                      quirks: bool = True) -> dict:
    """Videos of ``frames`` frames, each phase spanning 3 RUNs from RUN 2 (RUN 1 unlabelled).

    Quirks (as in the public release): video 0 has one truncated JPEG (RUN 5); video 1 has a
    duplicate ``F0/`` sub-folder; video 2's annotations name its last two RUNs, which have no image;
    an extra video has no annotation file. Returns what a correct reader must find.
    """
    names = [f"D2020.01.0{i % 9 + 1}_S{1000 + i}_I{100 + i}_WELL{i % 12 + 1}" for i in range(videos)]
    expected_frames = 0
    for v, name in enumerate(names):
        video_dir = root / "embryo_dataset" / name
        n_frames = frames - 4 if (quirks and v == 2) else frames
        # consecutive phases starting at a video-dependent one, 3 RUNs each
        n_phases = min(len(PHASES), (frames - 1) // 3)
        first = v % (len(PHASES) - n_phases + 1)
        phases = [(PHASES[first + i], 2 + 3 * i, 4 + 3 * i) for i in range(n_phases)]
        last_labelled = phases[-1][2]
        for run in range(1, n_frames + 1):
            write_frame(video_dir / f"{name}_RUN{run}.jpeg", 40 + 10 * v + run, size)
            if 2 <= run <= min(last_labelled, n_frames):
                expected_frames += 1
        annotations = root / "embryo_dataset_annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        (annotations / f"{name}_phases.csv").write_text("".join(f"{p},{a},{b}\n" for p, a, b in phases))
        times = root / "embryo_dataset_time_elapsed"
        times.mkdir(parents=True, exist_ok=True)
        (times / f"{name}_timeElapsed.csv").write_text(
            "frame_index,time\n" + "".join(f"{r},{0.25 * (r - 1):.2f}\n" for r in range(1, n_frames + 1)))
    info = {"videos": names, "expected_frames": expected_frames, "truncated": None, "no_annotation": None}
    if quirks:
        truncated = root / "embryo_dataset" / names[0] / f"{names[0]}_RUN5.jpeg"
        data = truncated.read_bytes()
        truncated.write_bytes(data[: len(data) // 2])
        info["truncated"] = truncated
        info["expected_frames"] -= 1
        dup_src = root / "embryo_dataset" / names[1]
        for path in sorted(dup_src.glob("*.jpeg")):
            (dup_src / "F0").mkdir(exist_ok=True)
            (dup_src / "F0" / path.name).write_bytes(path.read_bytes())
        orphan = "D2020.02.02_S2000_I200_WELL1"
        for run in range(1, 4):
            write_frame(root / "embryo_dataset" / orphan / f"{orphan}_RUN{run}.jpeg", 99, size)
        info["no_annotation"] = orphan
    return info


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("embryo")
    return root, make_tiny_dataset(root)


def tiny_train_overrides(root: Path) -> list[str]:
    """A CPU-second training config on the tiny data set (64-px crops: 2x2 layer4 maps)."""
    return [
        f"data.root={root}", "data.generate_if_missing=false", "data.crop_size=64", "data.batch_size=4",
        "data.num_workers=0", "data.frame_step=1", "data.val_fraction=0.2", "model.net.backbone=resnet18",
        "trainer=cpu", "logger=csv", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
        "+trainer.limit_train_batches=2",
    ]


@pytest.fixture(scope="session")
def tiny_train_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished training run dir (best.ckpt, config, test_metrics.json) of the CNN."""
    from embryo_xai.train import train
    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("train_run")
    cfg = compose_config("train", tiny_train_overrides(tiny_dataset[0]), out)
    train(cfg)
    return Path(cfg.paths.output_dir)
