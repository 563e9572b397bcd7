"""Benchmark of the faithfulness engine (issue 5).

Measures, for DAUC+IAUC+DC+IC on a fixed CNN:
- engine efficiency: model forwards per second inside ``faithfulness`` divided by the bare
  model's forwards per second at the same batch size (target >= 0.85);
- speed against the authors' ``saliency-maps-metrics`` on identical inputs, after
  asserting both give the same values (package conventions selected);
- peak memory over 10 vs 100 images (one call each, in fresh subprocesses);
- the extrapolated cost of the paper's full protocol (9 approaches x 7 metrics over the
  28282 test images at 448 px with ResNet-50) from a measured ResNet-50 throughput.

Usage: ``python benchmarks/bench_metrics.py [--image-size 112 --map-size 7 ...]``;
writes ``bench_results/metrics.json`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from embryo_xai.metrics import METRIC_NAMES, faithfulness, forward_passes_per_image, package_config
from embryo_xai.models import create_model

CURVE_METRICS = ("dauc", "iauc", "dc", "ic")
PAPER_TEST_IMAGES = 28282
PAPER_SAMPLE_IMAGES = 100
#: Native map side of each approach of the paper at 448 px (docs/architecture.md, Conventions): layer4 CAMs and
#: attention 14x14, RISE rendered at the CNN's 14x14 (its 7x7 grid is the masks'), ABN's layer3 attention 28x28,
#: BR-NPA's stride-8 map 56x56.
PAPER_APPROACH_MAPS = {
    "CNN/AM": 14, "CNN/Grad-CAM++": 14, "CNN/RISE": 14, "CNN/Score-CAM": 14, "CNN/Ablation-CAM": 14,
    "ABN": 28, "InterByParts": 14, "B-CNN": 14, "BR-NPA": 56,
}


class CountingModel(nn.Module):
    """Counts the images the engine forwards and the wall time spent inside the model."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.images_seen = 0
        self.forward_seconds = 0.0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        seconds, logits = timed(lambda: self.model(x), self.device)
        self.forward_seconds += seconds
        return logits


def build_model(backbone: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("cnn", backbone=backbone).eval().to(device)
    with torch.no_grad():  # a sharper random classifier: curves that move, as a trained model's
        model.head.fc.weight.mul_(20)
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def bare_throughput(model: nn.Module, batch_size: int, image_size: int, device: torch.device,
                    repeats: int) -> float:
    """Images per second of plain ``model(x)`` at ``batch_size``: median over ``repeats`` timed
    batches after one warm-up batch (the median resists other processes' bursts)."""
    inputs = torch.rand(batch_size, 3, image_size, image_size, device=device)
    with torch.inference_mode():
        model(inputs)
        seconds = [timed(lambda: model(inputs), device)[0] for _ in range(repeats)]
    return batch_size / float(np.median(seconds))


def random_inputs(n_images: int, image_size: int, map_size: int, device: torch.device):
    generator = torch.Generator().manual_seed(n_images * 1000 + image_size)
    images = torch.rand(n_images, 3, image_size, image_size, generator=generator).to(device)
    maps = torch.rand(n_images, map_size, map_size, generator=generator).to(device)
    return images, maps


def package_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                   batch_size: int, max_steps: int) -> dict[str, np.ndarray]:
    """DAUC/DC/IAUC/IC per image from ``saliency-maps-metrics`` (its model wants probabilities)."""
    from saliency_maps_metrics import multi_step_metrics as smm

    if not hasattr(np, "trapz"):  # removed in NumPy 2.4, still called by the package
        np.trapz = np.trapezoid
    prob_model = nn.Sequential(model, nn.Softmax(dim=1))
    values: dict[str, np.ndarray] = {}
    for metric in (smm.Deletion(batch_size=batch_size, max_step_nb=max_steps),
                   smm.Insertion(batch_size=batch_size, max_step_nb=max_steps)):
        scores, saliency = metric.compute_scores(prob_model, images, maps.unsqueeze(1), targets)
        auc_name, corr_name = metric.make_result_dic("auc", "corr")
        values[auc_name] = smm.compute_auc_metric(scores)
        values[corr_name] = metric.compute_calibration_metric(scores, saliency)
    return values


def engine_section(args: argparse.Namespace, device: torch.device) -> dict:
    """Efficiency and speed against the package. The engine runs with the package's
    conventions so both produce the same values; the forwards it runs do not depend on
    those conventions (only the post-processing of the curves does). Each side runs
    ``--rounds`` times, alternating with the bare model, and keeps its fastest run: on a
    shared machine load bursts only ever slow a run down."""
    model = build_model(args.backbone, device)
    images, maps = random_inputs(args.images, args.image_size, args.map_size, device)
    config = vars(package_config(batch_size=args.batch_size))
    try:
        import saliency_maps_metrics  # noqa: F401
    except ImportError:
        package_available = False
    else:
        package_available = True
        with torch.inference_mode():
            targets = model(images).argmax(dim=1)
    engine_runs, package_runs, bare_runs = [], [], []
    for _ in range(args.rounds):
        bare_runs.append(bare_throughput(model, args.batch_size, args.image_size, device, args.bare_repeats))
        counting = CountingModel(model, device)
        seconds, ours = timed(lambda counting=counting: faithfulness(counting, images, maps,
                                                                     metrics=CURVE_METRICS, **config), device)
        engine_runs.append((seconds, counting))
        if package_available:
            package_runs.append(timed(lambda: package_curves(model, images, maps, targets, args.batch_size,
                                                             config["max_steps"]), device))
    seconds, counting = min(engine_runs, key=lambda run: run[0])
    bare_fps = max(bare_runs)
    engine_fps = counting.images_seen / seconds
    row = {
        "device": str(device), "threads": torch.get_num_threads(), "backbone": args.backbone,
        "image_size": args.image_size, "map_size": args.map_size, "images": args.images,
        "batch_size": args.batch_size, "rounds": args.rounds, "engine_forwards": counting.images_seen,
        "engine_forwards_formula": args.images * forward_passes_per_image((args.map_size,) * 2,
                                                                          CURVE_METRICS),
        "engine_seconds": seconds, "engine_fps": engine_fps, "bare_fps": bare_fps,
        "efficiency": engine_fps / bare_fps,
        "share_of_engine_time_in_model_forward": counting.forward_seconds / seconds,
    }
    if not package_available:
        row["package"] = "saliency-maps-metrics not installed: comparison skipped"
        return row
    package_seconds, theirs = min(package_runs, key=lambda run: run[0])
    max_difference = max(float(np.abs(ours[name].cpu().numpy() - theirs[name]).max())
                         for name in CURVE_METRICS)
    assert max_difference < 1e-4, f"engine and package disagree by {max_difference}"
    row.update({"package_seconds": package_seconds, "speedup_vs_package": package_seconds / seconds,
                "max_abs_difference": max_difference})
    return row


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5) so the engine's own peak shows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_worker(args: argparse.Namespace) -> None:
    """Run in a fresh process: peak memory of one engine call over ``--memory-worker`` images."""
    device = torch.device(args.device)
    n_images = args.memory_worker
    model = build_model(args.backbone, device)
    images, maps = random_inputs(n_images, args.memory_image_size, args.memory_map_size, device)
    with torch.inference_mode():  # warm-up at the engine's batch size: allocator and kernels ready
        model(images[:1].expand(args.batch_size, -1, -1, -1))
    baseline_mb = rss_mb("VmRSS")
    peak_was_reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    faithfulness(model, images, maps, metrics=CURVE_METRICS, batch_size=args.batch_size)
    result = {"images": n_images, "baseline_rss_mb": baseline_mb, "peak_rss_mb": rss_mb("VmHWM"),
              "peak_is_since_start_of_call": peak_was_reset}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


def memory_section(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n_images in (10, 100):
        command = [sys.executable, __file__, "--memory-worker", str(n_images), "--device", args.device,
                   "--backbone", args.backbone, "--batch-size", str(args.batch_size),
                   "--memory-image-size", str(args.memory_image_size),
                   "--memory-map-size", str(args.memory_map_size)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        row["engine_extra_rss_mb"] = row["peak_rss_mb"] - row["baseline_rss_mb"]
        rows.append(row)
    return rows


def protocol_section(args: argparse.Namespace, device: torch.device) -> dict:
    """Forward passes of the paper's full protocol and hours at the measured ResNet-50 rate."""
    per_approach = {name: forward_passes_per_image((side, side), METRIC_NAMES)
                    for name, side in PAPER_APPROACH_MAPS.items()}
    per_image = sum(per_approach.values())
    model = build_model("resnet50", device)
    fps = bare_throughput(model, args.r50_batch, 448, device, args.r50_repeats)
    total = per_image * PAPER_TEST_IMAGES
    return {
        "per_approach_forwards_per_image": per_approach, "forwards_per_image_all_approaches": per_image,
        "test_images": PAPER_TEST_IMAGES, "total_forwards": total,
        "resnet50_448_fps": fps, "resnet50_batch": args.r50_batch, "device": str(device),
        "hours_full_test_set": total / fps / 3600,
        "hours_paper_sample_100": per_image * PAPER_SAMPLE_IMAGES / fps / 3600,
    }


def flatten(prefix: str, value, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(f"{prefix}.{key}" if prefix else key, item, rows)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flatten(f"{prefix}[{index}]", item, rows)
    else:
        rows.append((prefix, f"{value:.4g}" if isinstance(value, float) else str(value)))


def print_table(results: dict) -> None:
    engine, memory, protocol = results["engine"], results["memory"], results["protocol"]
    lines = [
        f"Faithfulness engine benchmark ({engine['device']}, {engine['threads']} threads)",
        f"  DAUC+IAUC+DC+IC, {engine['backbone']} {engine['image_size']} px, {engine['map_size']}x"
        f"{engine['map_size']} maps, {engine['images']} images, batch {engine['batch_size']}",
        f"  engine forwards/s         {engine['engine_fps']:10.1f}  ({engine['engine_forwards']} forwards)",
        f"  bare model forwards/s     {engine['bare_fps']:10.1f}",
        f"  efficiency (target 0.85)  {engine['efficiency']:10.3f}",
        f"  time inside model forward {engine['share_of_engine_time_in_model_forward']:10.3f} of the engine's",
    ]
    if "speedup_vs_package" in engine:
        lines += [
            f"  saliency-maps-metrics     {engine['package_seconds']:9.2f} s vs ours "
            f"{engine['engine_seconds']:.2f} s -> speed ratio {engine['speedup_vs_package']:.2f}x "
            f"(max |diff| {engine['max_abs_difference']:.1e})",
        ]
    lines.append(f"  peak memory ({results['memory_setup']}):")
    for row in memory:
        lines.append(f"    {row['images']:4d} images: peak RSS {row['peak_rss_mb']:8.1f} MB, engine extra "
                     f"{row['engine_extra_rss_mb']:7.1f} MB" +
                     (f", peak CUDA {row['peak_cuda_mb']:.1f} MB" if "peak_cuda_mb" in row else ""))
    lines += [
        "Paper protocol (9 approaches x 7 metrics, 28282 test images, 448 px, ResNet-50):",
        "  forwards per image: " + ", ".join(f"{name} {count}" for name, count
                                              in protocol["per_approach_forwards_per_image"].items()),
        f"  total forwards {protocol['total_forwards']:,} ({protocol['forwards_per_image_all_approaches']} "
        f"per image); ResNet-50 448 px {protocol['resnet50_448_fps']:.2f} img/s on {protocol['device']}",
        f"  -> {protocol['hours_full_test_set']:,.0f} h for the full test set, "
        f"{protocol['hours_paper_sample_100']:.1f} h for the paper's 100-image sample",
    ]
    print("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--map-size", type=int, default=7)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bare-repeats", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="alternating engine/package runs; fastest kept")
    parser.add_argument("--memory-image-size", type=int, default=32)
    parser.add_argument("--memory-map-size", type=int, default=7)
    parser.add_argument("--r50-batch", type=int, default=4)
    parser.add_argument("--r50-repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench_results/metrics", help="path prefix of the .json and .csv")
    parser.add_argument("--memory-worker", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_worker:
        memory_worker(args)
        return {}
    device = torch.device(args.device)
    results = {
        "engine": engine_section(args, device),
        "memory_setup": f"{args.backbone} {args.memory_image_size} px, {args.memory_map_size}x"
                        f"{args.memory_map_size} maps, DAUC+IAUC+DC+IC, one call",
        "memory": memory_section(args),
        "protocol": protocol_section(args, device),
    }
    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    rows: list[tuple[str, str]] = []
    flatten("", results, rows)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["quantity", "value"])
        writer.writerows(rows)
    return results


if __name__ == "__main__":
    main()
