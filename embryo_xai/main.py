"""``make run`` / ``python -m embryo_xai.main [--study demo|paper]``: the whole study, one command.

Trains every model, evaluates every approach (post-hoc methods on the CNN, attention maps of the
attention models) with the 7 metrics, and writes the report. Each step runs the public entry
point into a fixed run dir under ``--out`` and is skipped when its results are already there, so
a second run reuses finished steps and an interrupted one resumes (faithfulness rows included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "study"


def run_step(title: str, module: str, overrides: list[str], run_dir: Path, done: Path | None) -> None:
    if done is not None and done.is_file():
        print(f"[skip] {title}: done ({done})", flush=True)
        return
    print(f"[run ] {title}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", module, *overrides, f"hydra.run.dir={run_dir}"], check=True)
    print(f"[done] {title} in {time.perf_counter() - start:.0f} s", flush=True)


def approaches(models: list[str], posthoc: list[str]) -> list[tuple[str, str]]:
    return [("cnn", m) for m in posthoc if "cnn" in models] + [(m, "attention") for m in models if m != "cnn"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="demo", help=f"a study file in {CONF} (demo, paper)")
    parser.add_argument("--out", default="outputs/main", help="where the steps' run dirs go")
    parser.add_argument("--models", nargs="+", help="override the study's models")
    args = parser.parse_args(argv)
    study = OmegaConf.load(CONF / f"{args.study}.yaml")
    models = list(args.models or study.models)
    out = Path(args.out).resolve()
    started = time.perf_counter()

    for model in models:
        run_dir = out / "train" / model
        overrides = [*study.train, f"model={model}", *study.get("model_overrides", {}).get(model, [])]
        run_step(f"train {model}", "embryo_xai.train", overrides, run_dir,
                 run_dir / "test_metrics.json")
    for model, method in approaches(models, list(study.posthoc_methods)):
        run_dir = out / "faithfulness" / f"{model}-{method}"
        summary = run_dir / "summary.json"
        complete = summary.is_file() and json.loads(summary.read_text()).get("complete")
        # the entry point resumes an incomplete run; a complete one is skipped
        run_step(f"faithfulness {model} / {method}", "embryo_xai.faithfulness",
                 [f"model={model}", f"method={method}", f"train_run={out / 'train' / model}",
                  *study.faithfulness, *study.method_overrides.get(method, [])],
                 run_dir, summary if complete else None)
    report_dir = out / "report"
    run_step("report", "embryo_xai.report", [f"runs=[{out / 'train'},{out / 'faithfulness'}]", *study.report],
             report_dir, None)
    print(f"\nstudy finished in {time.perf_counter() - started:.0f} s")
    table = report_dir / "table1.md"
    if table.is_file():
        print("\nTable 1 (synthetic demo set)\n" + table.read_text())
    print(f"report: {report_dir / 'report.md'} (and report.html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
