"""LightningDataModule of the 16-stage frames, split by video (docs/architecture.md, The data format)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from embryo_xai.data.dataset import FrameDataset, build_transform, to_model_input
from embryo_xai.data.reader import DatasetIndex, Frame, scan_dataset
from embryo_xai.data.stages import STAGES

log = logging.getLogger(__name__)


def split_videos(videos: list[str], test_fraction: float, val_fraction: float, seed: int
                 ) -> dict[str, list[str]]:
    """Split by video so no video is in two splits: ``test_fraction`` of the videos for test,
    ``val_fraction`` of the remaining (train/val) videos for validation (at least one each)."""
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(f"fractions must lie in (0, 1): test={test_fraction}, val={val_fraction}")
    if len(videos) < 3:
        raise ValueError(f"need at least 3 videos to split into train/val/test, found {len(videos)}")
    order = np.random.default_rng(seed).permutation(sorted(videos)).tolist()
    n_test = min(max(1, round(len(order) * test_fraction)), len(order) - 2)
    test, trainval = order[:n_test], order[n_test:]
    n_val = min(max(1, round(len(trainval) * val_fraction)), len(trainval) - 1) if val_fraction > 0 else 0
    return {"train": sorted(trainval[n_val:]), "val": sorted(trainval[:n_val]), "test": sorted(test)}


def subsample_frames(frames: list[Frame], step: int) -> list[Frame]:
    """Keep one frame in ``step`` per video, regularly spaced in RUN order (paper: one in three)."""
    by_video: dict[str, list[Frame]] = {}
    for frame in frames:
        by_video.setdefault(frame.video, []).append(frame)
    return [f for video in sorted(by_video) for f in sorted(by_video[video], key=lambda f: f.run)[::step]]


class EmbryoDataModule(pl.LightningDataModule):
    def __init__(
        self,
        root: str = "data/synthetic",
        focal_plane: str = "F0",
        verify: str = "tail",
        generate_if_missing: bool = True,
        synthetic: dict | None = None,
        test_fraction: float = 0.5,
        val_fraction: float = 0.1,
        frame_step: int = 3,
        crop_size: int = 448,
        resize: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(root)
        self.index: DatasetIndex | None = None
        self.splits: dict[str, list[str]] = {}
        self.datasets: dict[str, FrameDataset] = {}

    def prepare_data(self) -> None:
        """Generate the embedded synthetic set when the root is absent (rank 0 only)."""
        if self.hparams.generate_if_missing and not (self.root / "embryo_dataset").is_dir():
            from embryo_xai.data.synthetic import generate_dataset

            options = dict(self.hparams.synthetic or {})
            log.info("no data set at %s: generating the synthetic one (%s)", self.root, options)
            generate_dataset(self.root, **options)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        if not 1 <= hp.frame_step:
            raise ValueError(f"frame_step must be >= 1, got {hp.frame_step}")
        resized = hp.resize or 500
        if hp.crop_size > resized:
            raise ValueError(f"crop_size {hp.crop_size} is larger than the (resized) frame {resized}")
        self.index = scan_dataset(self.root, hp.focal_plane, hp.verify)
        self.splits = split_videos(self.index.videos, hp.test_fraction, hp.val_fraction, hp.split_seed)
        frames = subsample_frames(self.index.frames, hp.frame_step)
        videos = self.index.videos
        for split, members in self.splits.items():
            chosen = set(members)
            self.datasets[split] = FrameDataset(
                [f for f in frames if f.video in chosen], videos,
                build_transform(split == "train", hp.crop_size, hp.resize), resize=hp.resize)

    @property
    def videos(self) -> list[str]:
        return self.index.videos if self.index else []

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Frames per stage in each split (Fig. 1)."""
        result = {}
        for split, dataset in self.datasets.items():
            counts = Counter(f.label for f in dataset.frames)
            result[split] = {stage: counts.get(i, 0) for i, stage in enumerate(STAGES)}
        return result

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Grayscale uint8 -> 3-channel float in [0, 1], on the device (cheaper than in workers)."""
        batch["image"] = to_model_input(batch["image"])
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        workers = hp.num_workers
        batch = hp.batch_size if split == "train" else (hp.eval_batch_size or hp.batch_size)
        return DataLoader(
            self.datasets[split], batch_size=batch, shuffle=shuffle, num_workers=workers,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
            persistent_workers=hp.persistent_workers and workers > 0,
            # a last batch of one breaks BatchNorm1d heads (IBP) in training
            drop_last=split == "train",
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
