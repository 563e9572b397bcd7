"""``make run``: the main job on the embedded synthetic default.

Each step runs the public entry point in its own fixed run dir under ``outputs/main/`` and
is skipped when its results are already there, so a second ``make run`` reuses finished
steps and an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DEMO = ["experiment=demo"]


def run_step(title: str, module: str, overrides: list[str], run_dir: Path, done_file: str) -> Path:
    done = run_dir / done_file
    if done.is_file():
        print(f"[skip] {title}: already done ({done})", flush=True)
        return run_dir
    print(f"[run ] {title} ...", flush=True)
    start = time.perf_counter()
    command = [sys.executable, "-m", module, *overrides, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True)
    print(f"[done] {title} in {time.perf_counter() - start:.0f} s", flush=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/main", help="where the steps' run dirs go")
    parser.add_argument("--models", nargs="+", default=["cnn"])
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training step")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = {}
    for model in args.models:
        run_dir = run_step(f"train {model}", "embryo_xai.train", [*DEMO, f"model={model}", *args.overrides],
                           out / "train" / model, "test_metrics.json")
        results[model] = json.loads((run_dir / "test_metrics.json").read_text())
    print("\nTest accuracy (synthetic demo set)")
    print(f"{'model':8s} {'per-video':>10s} {'per-frame':>10s}")
    for model, metrics in results.items():
        print(f"{model:8s} {100 * metrics['test/acc_video']:9.1f}% {100 * metrics['test/acc_frame']:9.1f}%")
    print(f"\nrun dirs under {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
