"""bf16 against float32 faithfulness: speed and what it changes in the study's numbers.

Runs every approach of a finished study twice, as the study runs it (same images, masks and
steps): ``precision=32`` and ``precision=bf16 channels_last=true``. Per approach it reports both
wall times, the largest change of a metric mean, and how many explained images changed their
predicted class (a near-tie flipped by bf16 changes the explained class, hence all its metrics).

    python -m benchmarks bench_precision                       # on `make run`'s outputs/main (~10 min)
    python -m benchmarks.bench_precision --study-dir outputs/main --models cnn --methods am rise
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import time
from pathlib import Path

from benchmarks.common import RESULTS, write_table
from embryo_xai.faithfulness import run_in_process
from embryo_xai.main import approaches
from embryo_xai.runs import FaithfulnessRun

PRECISIONS = {"float32": ["precision=32"], "bf16": ["precision=bf16", "channels_last=true"]}


def predictions(run_dir: Path) -> dict[str, str]:
    with open(FaithfulnessRun(run_dir).rows_file, newline="") as handle:
        return {row["image_id"]: row["prediction"] for row in csv.DictReader(handle)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study-dir", default="outputs/main", help="a study's --out (train/<model> inside)")
    parser.add_argument("--models", nargs="+", default=["cnn", "abn", "bcnn", "ibp", "brnpa"])
    parser.add_argument("--methods", nargs="+", default=["am", "gradcampp", "rise", "scorecam", "ablationcam"])
    parser.add_argument("--n-images", type=int, default=30)
    parser.add_argument("--rise-masks", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS / "precision"))
    args = parser.parse_args(argv)
    study, out = Path(args.study_dir).resolve(), Path(args.out)
    missing = [m for m in args.models if not (study / "train" / m / "checkpoints" / "best.ckpt").is_file()]
    if missing:
        raise SystemExit(f"no trained {', '.join(missing)} under {study}/train: run `make run` first")
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for model, method in approaches(args.models, args.methods):
        common = [f"model={model}", f"method={method}", f"train_run={study / 'train' / model}",
                  f"n_images={args.n_images}", "batch_size=10", "metrics.max_steps=49"]
        if method == "rise":
            common.append(f"method.num_masks={args.rise_masks}")
        seconds, means = {}, {}
        for precision, overrides in PRECISIONS.items():
            run_dir = out / precision / f"{model}-{method}"
            shutil.rmtree(run_dir, ignore_errors=True)  # timed from scratch, never resumed
            start = time.perf_counter()
            run_in_process([*common, *overrides], run_dir)
            seconds[precision] = time.perf_counter() - start
            means[precision] = FaithfulnessRun(run_dir).summary()["means"]
        exact, fast = (predictions(out / p / f"{model}-{method}") for p in PRECISIONS)
        changes = {k: abs(means["bf16"][k] - means["float32"][k]) for k in means["float32"]}
        worst = max(changes, key=lambda k: changes[k] if changes[k] == changes[k] else -1.0)
        rows.append({"approach": f"{model}/{method}", "float32 s": round(seconds["float32"], 1),
                     "bf16 s": round(seconds["bf16"], 1), "speed-up": round(seconds["float32"] / seconds["bf16"], 2),
                     "max |change of a mean|": round(changes[worst], 4), "metric": worst,
                     "predictions changed": sum(exact[i] != fast[i] for i in exact)})
    total32 = sum(r["float32 s"] for r in rows)
    total16 = sum(r["bf16 s"] for r in rows)
    rows.append({"approach": "all", "float32 s": round(total32, 1), "bf16 s": round(total16, 1),
                 "speed-up": round(total32 / total16, 2),
                 "max |change of a mean|": max(r["max |change of a mean|"] for r in rows), "metric": "",
                 "predictions changed": sum(r["predictions changed"] for r in rows)})
    write_table("bench_precision", rows, f"Faithfulness in bf16 vs float32 ({args.n_images} images per approach, "
                                         f"{study})", out_dir=out)
    return rows


if __name__ == "__main__":
    main()
