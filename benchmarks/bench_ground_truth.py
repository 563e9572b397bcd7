"""Ground-truth layer benchmark (issue 14): its extra cost per image against the faithfulness metrics' own.

On a generated synthetic set (the demo's frame size) and the demo's CNN architecture (random weights: the
cost does not depend on them), for ``--images`` labelled frames, one Grad-CAM++ map each:

- ``metrics``: the faithfulness engine's metrics (the demo's: the paper's seven at 49 steps and ROAD at
  20/50/80 %), the cost the ground truth is compared with;
- ``counterfactuals``: redrawing each frame once per structure (``render_many``);
- ``importance``: the model's forwards on the originals and counterfactuals (``true_importance``);
- ``gt + localisation``: per-structure saliency, ground-truth faithfulness and the four localisation metrics;
- ``sanity``: the randomisation cascade (3 points) and the random-logit test for Grad-CAM++ (the demo's
  settings; it scales with the explainer's cost, RISE and Score-CAM far more).

Reported: seconds per image of each part and its ratio to ``metrics``.

    python -m benchmarks.bench_ground_truth [--images 16 --size 128 --crop 112]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_table
from embryo_xai.data.reader import read_phases
from embryo_xai.data.synthetic import counterfactual, generate_dataset
from embryo_xai.data.synthetic.generate import video_names
from embryo_xai.explainers import create_explainer
from embryo_xai.metrics import faithfulness
from embryo_xai.metrics.ground_truth import ground_truth_faithfulness, structure_saliency, true_importance
from embryo_xai.metrics.localisation import LOCALISATION_METRICS
from embryo_xai.models import create_model
from embryo_xai.sanity import parameter_randomisation, random_logit

METRICS = ["dauc", "iauc", "dc", "ic", "iic", "ad", "add", "road_morf", "road_lerf", "road"]


def labelled_frames(root: Path, videos: int, seed: int, count: int) -> list[tuple[str, int]]:
    """``count`` frames spread over the videos and their phases (the middle RUN of each phase)."""
    frames = [(video, (first + last) // 2) for video in video_names(videos, seed)
              for _, first, last in read_phases(root / "embryo_dataset_annotations" / f"{video}_phases.csv")]
    picked = np.random.default_rng(0).choice(len(frames), size=min(count, len(frames)), replace=False)
    return [frames[i] for i in sorted(picked)]


def centre_crop(frames: np.ndarray, crop: int) -> torch.Tensor:
    top = (frames.shape[-1] - crop) // 2
    return torch.from_numpy(frames[..., top: top + crop, top: top + crop].copy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--crop", type=int, default=112)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = create_model("cnn", backbone="resnet10t", output_stride=16).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(Path(tmp), videos=8, seed=0, size=args.size, frames_per_video=120, workers=1,
                                progress=False)
        frames = labelled_frames(root, 8, 0, args.images)
        seconds: dict[str, float] = {}

        start = time.perf_counter()
        sets = counterfactual.render_many(root, frames)
        seconds["counterfactuals"] = time.perf_counter() - start

    n = len(sets)
    originals = centre_crop(np.stack([s.original for s in sets]), args.crop).float().div(255)[:, None]
    originals = originals.expand(-1, 3, -1, -1)
    removed = centre_crop(np.concatenate([s.removed for s in sets]), args.crop).float().div(255)[:, None]
    removed = removed.expand(-1, 3, -1, -1)
    owner = torch.tensor([i for i, s in enumerate(sets) for _ in s.names])
    width = max(len(s.names) for s in sets)
    masks = torch.zeros(n, width, args.crop, args.crop, dtype=torch.bool)
    for i, s in enumerate(sets):
        masks[i, : len(s.names)] = centre_crop(s.masks, args.crop)
    valid = masks.flatten(2).any(-1)
    explainer = create_explainer("gradcampp")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        targets = model(originals).argmax(1)
        maps = explainer(model, originals, targets)

        start = time.perf_counter()
        faithfulness(model, originals, maps, targets, metrics=METRICS, max_steps=49, road_percentiles=[20, 50, 80])
        seconds["metrics"] = time.perf_counter() - start

        start = time.perf_counter()
        _, drops = true_importance(model, originals, removed, owner, targets)
        seconds["importance"] = time.perf_counter() - start

        start = time.perf_counter()
        importance = torch.full((n, width), torch.nan)
        importance[owner, torch.cat([torch.arange(len(s.names)) for s in sets])] = drops
        ground_truth_faithfulness(structure_saliency(maps, masks), importance, valid)
        stage = (masks & torch.stack([torch.nn.functional.pad(torch.as_tensor(s.defining), (0, width - len(s.names)))
                                      for s in sets])[..., None, None]).any(1)
        for function, _, _ in LOCALISATION_METRICS.values():
            function(maps, stage)
        seconds["gt + localisation"] = time.perf_counter() - start

        start = time.perf_counter()
        parameter_randomisation(model, explainer, originals[:4], targets[:4], steps=3, original=maps[:4])
        random_logit(model, explainer, originals[:4], targets[:4], original=maps[:4])
        seconds["sanity (4 images)"] = time.perf_counter() - start

    per_image = {part: value / (4 if part.startswith("sanity") else n) for part, value in seconds.items()}
    rows = [{"part": part, "s_per_image": per_image[part], "ratio_to_metrics": per_image[part] / per_image["metrics"]}
            for part in per_image]
    extra = sum(per_image[p] for p in ("counterfactuals", "importance", "gt + localisation"))
    rows.append({"part": "ground truth without sanity", "s_per_image": extra,
                 "ratio_to_metrics": extra / per_image["metrics"]})
    write_table("bench_ground_truth", rows, f"Ground-truth layer cost per image ({n} images, "
                f"{int(valid.sum())} structures, {args.crop}-px crops, CPU, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
