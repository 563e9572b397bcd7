"""Score-CAM peak memory on ResNet-50 at 448 px (issue target: within 3 GB).

Score-CAM runs its masked forwards in chunks of ``batch_size`` images, so its working set is
bounded by the chunk, not by the channel count. Each run keeps K of layer4's 2048 channels
varying (the rest forced to zero, which Score-CAM skips exactly) and reports the peak for
K = 1, 2 and 4 x the batch size (the full 2048 channels take 32x the time of K = 64). On CUDA the
peak is ``torch.cuda.max_memory_allocated`` (exact); on the CPU it is the process's peak RSS,
which also counts allocator fragmentation between chunks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from benchmarks.common import write_table


def worker(channels: int, batch_size: int, size: int, device: str) -> dict:
    import torch

    from embryo_xai.explainers import create_explainer
    from embryo_xai.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", backbone="resnet50").eval().to(device)
    keep = torch.zeros(2048, device=device)
    keep[:channels] = 1
    model.backbone.layer4.register_forward_hook(lambda m, i, out: out * keep[None, :, None, None])
    image = torch.rand(1, 3, size, size, device=device)
    with torch.inference_mode():
        model(image)  # weights and allocator warm: the baseline
    base = torch.cuda.memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    create_explainer("scorecam", batch_size=batch_size)(model, image, None)
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        extra_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mib, extra_mib = peak_kib / 1024, (peak_kib - base) / 1024
    return {"device": device, "size": size, "batch_size": batch_size, "varying_channels": channels,
            "seconds": round(seconds, 1), "peak_mib": round(peak_mib), "explainer_extra_mib": round(extra_mib),
            "target_mib": 3072}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    parser.add_argument("--channels", type=int, nargs="+", help="varying channels per run (default 1, 2, 4 x batch)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(**json.loads(args.worker))))
        return []
    rows = []
    for channels in args.channels or (args.batch_size, 2 * args.batch_size, 4 * args.batch_size):
        spec = json.dumps({"channels": channels, "batch_size": args.batch_size, "size": args.size,
                           "device": args.device})
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_scorecam_memory", "--worker", spec],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    write_table("scorecam_memory", rows, "Score-CAM peak memory, ResNet-50 CNN (one image; process peak)")
    return rows


if __name__ == "__main__":
    main()
