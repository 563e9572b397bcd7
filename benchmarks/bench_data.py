"""Input pipeline: images/s delivered by the DataModule at 448 crops from 500x500 JPEGs."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_table
from embryo_xai.data.datamodule import EmbryoDataModule
from embryo_xai.data.synthetic import generate_dataset


def measure(root: Path, workers: int, batch_size: int, crop: int, batches: int) -> dict:
    """Images/s over ``batches`` training batches (epochs repeated as needed), start-up excluded."""
    dm = EmbryoDataModule(root=str(root), generate_if_missing=False, crop_size=crop, batch_size=batch_size,
                          num_workers=workers, frame_step=1, persistent_workers=workers > 0,
                          test_fraction=0.2, val_fraction=0.1)
    dm.setup()
    loader = dm.train_dataloader()

    def stream():
        while True:
            yield from loader

    iterator = stream()
    next(iterator)  # workers started, first batch out: exclude start-up
    start = time.perf_counter()
    images = 0
    for _, batch in zip(range(batches), iterator):
        images += len(dm.on_after_batch_transfer(batch, 0)["image"])
    seconds = time.perf_counter() - start
    return {"workers": workers, "batch_size": batch_size, "crop": crop, "images": images,
            "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1), "target": 300}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", help="existing data set (default: a fresh synthetic one)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else generate_dataset(Path(tmp) / "synthetic", videos=4, seed=0,
                                                                   size=500, frames_per_video=300)
        rows = [measure(root, w, args.batch_size, 448, args.batches) for w in args.workers]
    write_table("data", rows, "Input pipeline (DataModule, 448 random crops of 500x500 JPEGs)")
    return rows


if __name__ == "__main__":
    main()
