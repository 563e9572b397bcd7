"""What several test modules share: config composition (one way, as the entry points compose),
the tiny data set in the real format, and map comparisons. Tests import from here, never from
each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from PIL import Image

from embryo_xai.data.stages import PHASES
from embryo_xai.utils import compose_job

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")


def compose_config(name: str, overrides: list[str], tmp_path: Path | None = None,
                   return_hydra_config: bool = False) -> DictConfig:
    """``conf/<name>.yaml`` with ``overrides``. With ``tmp_path``: a job config as an entry point runs it
    (output dir ``tmp_path/run``, log dir ``tmp_path/logs``); without: the config as composed, in
    the current working directory (``return_hydra_config`` adds the ``hydra`` node)."""
    if tmp_path is None:
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            return compose(name, overrides=overrides, return_hydra_config=return_hydra_config)
    cfg = compose_job(name, overrides, output_dir=tmp_path / "run", root_dir=REPO)
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path / "logs")
    return cfg


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


def tiny_train_overrides(root: Path) -> list[str]:
    """A CPU-second training config on the tiny data set (64-px crops: 2x2 layer4 maps)."""
    return [
        f"data.root={root}", "data.generate_if_missing=false", "data.crop_size=64", "data.batch_size=4",
        "data.num_workers=0", "data.frame_step=1", "data.val_fraction=0.2", "model.net.backbone=resnet18",
        "trainer=cpu", "logger=csv", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
        "+trainer.limit_train_batches=2",
    ]


def map_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of min-max normalised maps."""

    def norm(maps: torch.Tensor) -> torch.Tensor:
        flat = maps.flatten(1).double()
        flat = flat - flat.amin(1, keepdim=True)
        flat = flat / flat.amax(1, keepdim=True).clamp_min(1e-12)
        return flat - flat.mean(1, keepdim=True)

    a, b = norm(a), norm(b)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
