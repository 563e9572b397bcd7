"""Run every benchmark in one process, one after the other (one table each).

``python -m benchmarks [name ...]`` runs the named ones; ``bench_precision`` (bf16 against float32
faithfulness on `make run`'s trained models, ~10 min) runs only when named."""

import importlib
import sys

BENCHES = ["bench_data", "bench_explainers", "bench_metrics", "bench_road", "bench_scorecam_memory",
           "bench_ground_truth"]

if __name__ == "__main__":
    only = sys.argv[1:] or BENCHES
    for name in only:
        importlib.import_module(f"benchmarks.{name}").main([])
