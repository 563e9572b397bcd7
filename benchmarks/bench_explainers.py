"""Explainer benchmark: ours vs pytorch-grad-cam and vs bare forward passes, on this machine.

Every measurement runs in its own subprocess (same model weights, images and batch size) so peak
memory is per method: on CPU the growth of the process's max RSS above the loaded model, on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before. Forward passes are counted
with pre-hooks on the stem (full network passes) and on the head (head-only re-runs).

    python benchmarks/bench_explainers.py [--backbone resnet18 --size 112 --images 1 --batch-size 64
                                           --rise-masks 1000 --out bench_results/explainers]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OURS = ["am", "cam", "gradcam", "gradcampp", "scorecam", "ablationcam", "rise"]
BARE = ("scorecam", "rise")  # methods timed against their bare forward passes
REFERENCE = {"gradcampp": "GradCAMPlusPlus", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}
TARGETS = "Ablation-CAM >= 10x grad-cam; Score-CAM <= 1.1x bare and >= 1x grad-cam; " \
          "Grad-CAM++ >= 1x grad-cam; RISE <= 1.15x bare"


def build(spec: dict):
    """Model, images and explained classes, identical in every subprocess."""
    from embryo_xai.models import create_model

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = create_model("cnn", backbone=spec["backbone"]).to(device).eval()
    images = torch.rand(spec["images"], 3, spec["size"], spec["size"],
                        generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        targets = model(images).argmax(1)
    return model, images, targets


def peak_memory_mib(device: torch.device, since: float) -> float:
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - since) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - since) / 1024  # KiB on Linux


def varying_channels(model, images) -> int:
    """Score-CAM's masked forwards: channels whose layer4 map is not constant, summed over images."""
    with torch.inference_mode():
        flat = model.forward_features(images).flatten(2)
    return int((flat.amax(2) > flat.amin(2)).sum())


def make_runner(side: str, spec: dict, model, images, targets):
    """A no-argument callable running ``spec["method"]`` once: ours, grad-cam's, or its bare forwards."""
    method, batch_size = spec["method"], spec["batch_size"]
    if side == "ours":
        from embryo_xai.explainers import create_explainer

        cfg = {"num_masks": spec["rise_masks"]} if method == "rise" else {}
        explainer = create_explainer(method, batch_size=batch_size, **cfg)
        return lambda: explainer(model, images, targets)
    if side == "grad-cam":
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        kwargs = {"batch_size": batch_size} if method == "ablationcam" else {}
        cam = getattr(pytorch_grad_cam, REFERENCE[method])(model=model, target_layers=[model.backbone.layer4],
                                                           **kwargs)
        cam.batch_size = batch_size
        cam_targets = [ClassifierOutputTarget(int(c)) for c in targets]
        return lambda: cam(images, cam_targets)
    if side != "bare":
        raise ValueError(f"unknown benchmark side {side!r}")
    # The forward passes the method needs, with nothing else: one per varying channel (Score-CAM)
    # or one per mask and image (RISE), in chunks of the same batch size.
    rows = varying_channels(model, images) if spec["method"] == "scorecam" else spec["rise_masks"] * len(images)
    if rows == 0:
        return None  # nothing to compare with: every channel was constant
    chunk = images[torch.arange(batch_size, device=images.device) % len(images)]

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, rows, batch_size):
                model(chunk[: min(batch_size, rows - start)])

    return bare


def timed(run, device: torch.device, min_time: float) -> float:
    """Seconds per call, repeating fast calls until ``min_time``."""
    repeats, elapsed = 0, 0.0
    while repeats == 0 or elapsed < min_time:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - start
        repeats += 1
    return elapsed / repeats


def measure(spec: dict) -> dict:
    """Count one job's forwards and peak memory on its first call, then time it ``rounds`` times
    (min, robust to a shared machine). The baselines in ``spec["baselines"]`` (grad-cam's method,
    bare forwards) are timed alternately with it in the same process, so both sides of every
    ratio see the same machine load."""
    device = torch.device(spec["device"])
    model, images, targets = build(spec)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        memory_before = torch.cuda.memory_allocated(device)
    else:  # the loaded model and one plain forward of the images are the baseline
        memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = make_runner(spec["side"], spec, model, images, targets)
    rows = {"full": 0, "head": 0}
    hooks = [model.backbone.stem.register_forward_pre_hook(lambda m, a: rows.__setitem__("full", rows["full"]
                                                                                         + len(a[0]))),
             model.head.register_forward_pre_hook(lambda m, a: rows.__setitem__("head", rows["head"] + len(a[0])))]
    seconds = [timed(run, device, 0.0) / len(images)]  # the counted call is the first timing round
    for hook in hooks:
        hook.remove()
    result = {**{k: spec[k] for k in ("side", "method")}, "full_forwards_per_image": rows["full"] / len(images),
              "head_forwards_per_image": rows["head"] / len(images),
              "peak_memory_mib": peak_memory_mib(device, memory_before)}
    made = {side: make_runner(side, spec, model, images, targets) for side in spec.get("baselines", ())}
    baselines = {side: runner for side, runner in made.items() if runner is not None}
    baseline_seconds: dict[str, list[float]] = {side: [] for side in baselines}
    quiet = contextlib.redirect_stderr(io.StringIO())  # grad-cam's tqdm bars
    for round_index in range(spec["rounds"]):
        for side, baseline in baselines.items():
            with quiet:
                baseline_seconds[side].append(timed(baseline, device, spec["min_time"]) / len(images))
        if round_index > 0 or spec["min_time"] > 0:
            seconds.append(timed(run, device, spec["min_time"]) / len(images))
    result.update(seconds_per_image=min(seconds), images_per_s=1 / min(seconds))
    result.update({f"{side}_seconds_per_image": min(values) for side, values in baseline_seconds.items()})
    return result


def run_job(spec: dict, in_process: bool) -> dict:
    if in_process:
        return measure(spec)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark job {spec['side']}/{spec['method']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: list[dict]) -> tuple[list[dict], dict]:
    """One row per method of ours with its ratios, and the issue's targets checked."""
    by_key = {(r["side"], r["method"]): r for r in results}
    rows, checks = [], {}
    for method in OURS:
        ours = by_key.get(("ours", method))
        if ours is None:
            continue
        row = {"method": method, **{k: ours[k] for k in ("images_per_s", "full_forwards_per_image",
                                                       "head_forwards_per_image", "peak_memory_mib")}}
        if "grad-cam_seconds_per_image" in ours:
            row.update(gradcam_images_per_s=1 / ours["grad-cam_seconds_per_image"],
                       speedup_vs_gradcam=ours["grad-cam_seconds_per_image"] / ours["seconds_per_image"])
        if ("grad-cam", method) in by_key:
            theirs = by_key[("grad-cam", method)]
            row.update(gradcam_peak_memory_mib=theirs["peak_memory_mib"],
                       gradcam_full_forwards_per_image=theirs["full_forwards_per_image"])
        if "bare_seconds_per_image" in ours:
            row["time_vs_bare_forwards"] = ours["seconds_per_image"] / ours["bare_seconds_per_image"]
        rows.append(row)
    named = {row["method"]: row for row in rows}
    if "speedup_vs_gradcam" in named.get("ablationcam", {}):
        checks["ablationcam >= 10x grad-cam"] = named["ablationcam"]["speedup_vs_gradcam"] >= 10
    if "speedup_vs_gradcam" in named.get("gradcampp", {}):
        checks["gradcampp >= 1x grad-cam"] = named["gradcampp"]["speedup_vs_gradcam"] >= 1
    if "scorecam" in named:
        if "time_vs_bare_forwards" in named["scorecam"]:
            checks["scorecam <= 1.1x bare forwards"] = named["scorecam"]["time_vs_bare_forwards"] <= 1.1
        if "speedup_vs_gradcam" in named["scorecam"]:
            checks["scorecam >= 1x grad-cam"] = named["scorecam"]["speedup_vs_gradcam"] >= 1
    if "time_vs_bare_forwards" in named.get("rise", {}):
        checks["rise <= 1.15x bare forwards"] = named["rise"]["time_vs_bare_forwards"] <= 1.15
    return rows, checks


def print_table(rows: list[dict], checks: dict, header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value, digits=2) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    table = Table(title=header)
    for column in ("method", "img/s", "net passes/img", "head passes/img", "peak MiB", "grad-cam img/s",
                   "grad-cam passes/img", "grad-cam MiB", "speedup vs grad-cam", "time / bare fwd"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(row["method"], fmt(row["images_per_s"]), fmt(row["full_forwards_per_image"], 0),
                      fmt(row["head_forwards_per_image"], 0), fmt(row["peak_memory_mib"], 0),
                      fmt(row.get("gradcam_images_per_s")), fmt(row.get("gradcam_full_forwards_per_image"), 0),
                      fmt(row.get("gradcam_peak_memory_mib"), 0), fmt(row.get("speedup_vs_gradcam")),
                      fmt(row.get("time_vs_bare_forwards")))
    console = Console(width=180)
    console.print(table)
    for name, passed in checks.items():
        console.print(f"  {'PASS' if passed else 'FAIL'}  {name}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rise-masks", type=int, default=1000, help="fewer than the 4000 default, for time")
    parser.add_argument("--methods", nargs="+", default=OURS, choices=OURS)
    parser.add_argument("--no-gradcam", action="store_true", help="skip grad-cam and bare baselines")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-time", type=float, default=0.3, help="repeat fast calls up to this many seconds")
    parser.add_argument("--rounds", type=int, default=2, help="timings per job; the minimum is reported")
    parser.add_argument("--in-process", action="store_true", help="no subprocesses (peak memory then cumulative)")
    parser.add_argument("--out", default="bench_results/explainers", help="writes OUT.json and OUT.csv")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return {}

    base = {"device": args.device, "backbone": args.backbone, "size": args.size, "images": args.images,
            "batch_size": args.batch_size, "rise_masks": args.rise_masks, "min_time": args.min_time,
            "rounds": args.rounds}
    def baselines(method: str) -> list[str]:
        return [] if args.no_gradcam else ["grad-cam"] * (method in REFERENCE) + ["bare"] * (method in BARE)

    jobs = [{**base, "side": "ours", "method": method, "baselines": baselines(method)} for method in args.methods]
    # grad-cam's forward counts and peak memory, in a process of its own (its timing is above)
    jobs += [{**base, "side": "grad-cam", "method": m, "rounds": 1, "min_time": 0.0}
             for m in args.methods if m in REFERENCE and not args.no_gradcam]
    results = []
    for job in jobs:
        results.append(run_job(job, args.in_process))
        print(f"  {job['side']:>8} {job['method']:<12} {results[-1]['seconds_per_image']:.3f} s/image", flush=True)
    rows, checks = summarise(results)
    header = (f"explainers on {args.device} ({torch.get_num_threads()} threads): {args.backbone} @ {args.size}px, "
              f"{args.images} images, batch {args.batch_size}, RISE {args.rise_masks} masks")
    print_table(rows, checks, header)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"config": base, "targets": TARGETS, "checks": checks, "rows": rows, "raw": results,
              "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.csv')}")
    return report


if __name__ == "__main__":
    main()
