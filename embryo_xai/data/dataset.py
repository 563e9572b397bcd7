"""Frames as tensors: grayscale JPEG -> (3, H, W) float in [0, 1] plus provenance."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from embryo_xai.data.reader import Frame

log = logging.getLogger(__name__)


def build_transform(train: bool, crop_size: int, resize: int | None = None) -> v2.Transform:
    """Paper protocol: random crop + horizontal flip for training, centre crop for test.
    ``resize`` (demo on CPU) scales the 500-px frame first, keeping the crop/frame ratio."""
    steps: list[v2.Transform] = []
    if resize:
        steps.append(v2.Resize(resize, antialias=True))
    steps += [v2.RandomCrop(crop_size), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(crop_size)]
    return v2.Compose(steps)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, H, W) frames -> float (B, 3, H, W) in [0, 1], on whatever device they are.

    Frames travel through the loader as 1-channel uint8 (a twelfth of the bytes of 3-channel
    float) and become model input after the transfer to the device."""
    return images.float().div_(255.0).expand(-1, 3, -1, -1)


class FrameDataset(Dataset):
    """Each item: ``{"image", "label", "video_idx", "run", "index"}`` with ``image`` a uint8
    (1, H, W) frame (see :func:`to_model_input`); ``video_idx`` indexes ``videos`` so
    per-video accuracy and figures can find the frame again."""

    def __init__(self, frames: Sequence[Frame], videos: Sequence[str], transform: v2.Transform,
                 resize: int | None = None) -> None:
        self.frames = list(frames)
        self.videos = list(videos)
        self.video_to_idx = {v: i for i, v in enumerate(self.videos)}
        self.transform = transform
        self.resize = resize
        self.failed: set[int] = set()

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> torch.Tensor:
        """Decode one frame to a (1, H, W) uint8 tensor."""
        with Image.open(self.frames[index].path) as image:
            if self.resize:
                # JPEG DCT scaling: decode at a reduced size when the frame will be shrunk anyway.
                image.draft("L", (self.resize, self.resize))
            array = image.convert("L")
            return TF.pil_to_tensor(array)

    def __getitem__(self, index: int) -> dict:
        # A frame that passed the reader's check can still fail to decode; never crash an
        # epoch for it: use the next frame of the same video and log it once.
        for offset in range(len(self.frames)):
            candidate = (index + offset) % len(self.frames)
            try:
                pixels = self.load(candidate)
                break
            except OSError as error:
                if candidate not in self.failed:
                    self.failed.add(candidate)
                    log.warning("cannot decode %s (%s); using a neighbour frame", self.frames[candidate].path,
                                error)
        else:  # pragma: no cover - every frame unreadable
            raise RuntimeError("no frame of the data set could be decoded")
        image = self.transform(pixels)
        frame = self.frames[candidate]
        return {"image": image, "label": frame.label, "video_idx": self.video_to_idx[frame.video],
                "run": frame.run, "index": candidate}
