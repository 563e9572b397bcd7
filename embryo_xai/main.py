"""``make run`` / ``python -m embryo_xai.main [--study demo|paper]``: the whole study, one command.

Trains every model, evaluates every approach (post-hoc methods on the CNN, attention maps of the
attention models) with the 7 metrics, and writes the report. Each step runs the public entry
point (training and the report as subprocesses, faithfulness in this process) into a fixed run dir
under ``--out`` and is skipped when its results are already there, so a second run reuses finished
steps and an interrupted one resumes (faithfulness rows included). With ``warm_start`` in the study
file, the other models start from the backbone of the one it names, which is then trained first.
With ``distill: {model: [overrides]}``, that model's teacher (the model with those overrides, e.g.
BR-NPA at low resolution) is trained first into ``<out>/teachers/<model>`` and the model learns from it.
"""

from __future__ import annotations

import argparse
import json
import logging
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
    result = subprocess.run([sys.executable, "-m", module, *overrides, f"hydra.run.dir={run_dir}"])
    if result.returncode != 0:  # the step printed its own error above
        raise SystemExit(f"error: step '{title}' failed (exit {result.returncode}); its log: {run_dir}")
    print(f"[done] {title} in {time.perf_counter() - start:.0f} s", flush=True)


def run_faithfulness_step(title: str, overrides: list[str], run_dir: Path) -> None:
    """One approach in this process (saves the ~6 s of imports a subprocess pays per approach)."""
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("complete"):
        print(f"[skip] {title}: done ({summary})", flush=True)
        return  # an incomplete run is resumed by the entry point itself
    from embryo_xai.faithfulness import run_in_process

    print(f"[run ] {title}", flush=True)
    start = time.perf_counter()
    run_in_process(overrides, run_dir)
    print(f"[done] {title} in {time.perf_counter() - start:.0f} s", flush=True)


def approaches(models: list[str], posthoc: list[str]) -> list[tuple[str, str]]:
    return [("cnn", m) for m in posthoc if "cnn" in models] + [(m, "attention") for m in models if m != "cnn"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    studies = ", ".join(sorted(p.stem for p in CONF.glob("*.yaml")))
    parser.add_argument("--study", default="demo", help=f"a study in {CONF} ({studies}) or a study .yaml file")
    parser.add_argument("--out", default="outputs/main", help="where the steps' run dirs go")
    parser.add_argument("--models", nargs="+", help="override the study's models")
    parser.add_argument("--set", action="append", default=[], metavar="STEP:OVERRIDE",
                        help="an extra Hydra override for every step of one kind (train, faithfulness, report), "
                             "after the study's own: --set train:trainer.max_epochs=1 (repeatable)")
    args = parser.parse_args(argv)
    extra: dict[str, list[str]] = {"train": [], "faithfulness": [], "report": []}
    for item in args.set:
        step, _, override = item.partition(":")
        if step not in extra or "=" not in override:
            parser.error(f"--set {item!r}: expected STEP:KEY=VALUE with STEP one of {', '.join(extra)}")
        extra[step].append(override)
    study_file = Path(args.study) if args.study.endswith((".yaml", ".yml")) else CONF / f"{args.study}.yaml"
    if not study_file.is_file():
        raise SystemExit(f"no study file {study_file}; studies in {CONF}: {studies}, or pass a .yaml path")
    study = OmegaConf.load(study_file)
    models = list(args.models or study.models)
    out = Path(args.out).resolve()
    started = time.perf_counter()

    warm = study.get("warm_start")
    if warm and warm["from"] in models and models.index(warm["from"]) != 0:
        models.remove(warm["from"])
        models.insert(0, warm["from"])  # the others start from its backbone: train it first
    distill = study.get("distill") or {}
    for model in models:
        overrides = [*study.train, f"model={model}"]
        if warm and model != warm["from"]:
            source = out / "train" / warm["from"] / "checkpoints" / "best.ckpt"
            if not source.is_file():
                raise SystemExit(f"warm start: {source} not found; train {warm['from']!r} first "
                                 f"(include it in --models) or drop `warm_start` from the study file")
            # quoted: a path with spaces or '=' stays one Hydra value
            overrides += [f"model.backbone_init='{source}'", *warm.get("overrides", [])]
        overrides += [*study.get("model_overrides", {}).get(model, []), *extra["train"]]
        if model in distill:  # its teacher first (outside train/: not one of the study's approaches)
            teacher_dir = out / "teachers" / model
            run_step(f"train {model} teacher", "embryo_xai.train", [*overrides, *distill[model]], teacher_dir,
                     teacher_dir / "test_metrics.json")
            overrides.append(f"model.net.teacher_ckpt='{teacher_dir / 'checkpoints' / 'best.ckpt'}'")
        run_dir = out / "train" / model
        run_step(f"train {model}", "embryo_xai.train", overrides, run_dir, run_dir / "test_metrics.json")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for model, method in approaches(models, list(study.posthoc_methods)):
        run_faithfulness_step(f"faithfulness {model} / {method}",
                              [f"model={model}", f"method={method}", f"train_run={out / 'train' / model}",
                               *study.faithfulness, *study.method_overrides.get(method, []), *extra["faithfulness"]],
                              out / "faithfulness" / f"{model}-{method}")
    report_dir = out / "report"
    run_step("report", "embryo_xai.report",
             [f"runs=[{out / 'train'},{out / 'faithfulness'}]", *study.report, *extra["report"]], report_dir, None)
    print(f"\nstudy finished in {time.perf_counter() - started:.0f} s")
    table = report_dir / "table1.md"
    if table.is_file():
        print("\nTable 1 (synthetic demo set)\n" + table.read_text())
    print(f"report: {report_dir / 'report.md'} (and report.html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
