"""``make run`` / ``python -m embryo_xai.main [study=demo|demo_scratch|paper] [overrides]``: the whole study.

Trains every model, evaluates every approach (post-hoc methods on the CNN, attention maps of the attention
models) with the metrics, measures them against the ground truth on the synthetic set (the control pseudo-
explainers, then ``embryo_xai.ground_truth``; study field ``ground_truth``), and writes the report. Each step
runs the public entry point (training, ground truth and the report as subprocesses, faithfulness in this
process) into a fixed run dir under ``out`` and is skipped when its results are already there, so a second run
reuses finished steps and an interrupted one resumes (faithfulness rows included). With ``warm_start`` in the
study, the other models start from the backbone of the model it names, which is then trained first. With
``distill: {model: [overrides]}``, that model's teacher (the model with those overrides, e.g. BR-NPA at low
resolution) is trained first into ``<out>/teachers/<model>`` and the model learns from it.

The study is a Hydra config group (``conf/study/``), composed by ``conf/main.yaml``, which lists the
overrides (``out=``, ``models=``, ``extra.<step>=``). The runner's own ``.hydra/`` and ``main.log``
go to ``out``, beside the steps' ``train/``, ``faithfulness/`` and ``report/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from embryo_xai import tracking
from embryo_xai.errors import UsageError, exit_on_usage_error
from embryo_xai.utils import CONF_DIR

log = logging.getLogger(__name__)

TRAIN, FAITHFULNESS, REPORT = "embryo_xai.train", "embryo_xai.faithfulness", "embryo_xai.report"
GROUND_TRUTH = "embryo_xai.ground_truth"


@dataclass
class Step:
    """One run of an entry point: ``python -m <module> <overrides> hydra.run.dir=<run_dir>``."""

    title: str
    module: str
    overrides: list[str]
    run_dir: Path
    done: Path | None = None  # written when the step finished: it is skipped then (the report always runs)
    needs: Path | None = None  # a checkpoint an earlier step (or run) must have written: the warm-start source
    study_name: str | None = None  # the W&B group, passed as study_name=... to the steps that log to W&B


def approaches(models: list[str], posthoc: list[str]) -> list[tuple[str, str]]:
    return [("cnn", m) for m in posthoc if "cnn" in models] + [(m, "attention") for m in models if m != "cnn"]


def plan_steps(cfg: DictConfig) -> list[Step]:
    """Every step of the study ``cfg`` (conf/main.yaml composed) in the order they run; runs nothing."""
    study, extra = cfg.study, cfg.extra
    models = list(cfg.models or study.models)
    known = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    if unknown := [m for m in models if m not in known]:
        raise UsageError(f"unknown model(s) {', '.join(unknown)} in models=; models: {', '.join(known)}")
    out = Path(cfg.out).resolve()
    steps: list[Step] = []

    warm = study.warm_start
    if warm and warm["from"] in models and models.index(warm["from"]) != 0:
        models.remove(warm["from"])
        models.insert(0, warm["from"])  # the others start from its backbone: train it first
    distill = study.distill or {}
    for model in models:
        overrides = [*study.train, f"model={model}"]
        source = None
        if warm and model != warm["from"]:
            source = out / "train" / warm["from"] / "checkpoints" / "best.ckpt"
            # quoted: a path with spaces or '=' stays one Hydra value
            overrides += [f"model.backbone_init='{source}'", *warm.get("overrides", [])]
        overrides += [*study.model_overrides.get(model, []), *extra.train]
        if model in distill:  # its teacher first (outside train/: not one of the study's approaches)
            teacher_dir = out / "teachers" / model
            steps.append(Step(f"train {model} teacher", TRAIN, [*overrides, *distill[model]], teacher_dir,
                              teacher_dir / "test_metrics.json", source))
            overrides.append(f"model.net.teacher_ckpt='{teacher_dir / 'checkpoints' / 'best.ckpt'}'")
        run_dir = out / "train" / model
        steps.append(Step(f"train {model}", TRAIN, overrides, run_dir, run_dir / "test_metrics.json", source))
    for model, method in approaches(models, list(study.posthoc_methods)):
        run_dir = out / "faithfulness" / f"{model}-{method}"
        overrides = [f"model={model}", f"method={method}", f"train_run={out / 'train' / model}",
                     *study.faithfulness, *study.method_overrides.get(method, []), *extra.faithfulness]
        steps.append(Step(f"faithfulness {model} / {method}", FAITHFULNESS, overrides, run_dir,
                          run_dir / "summary.json"))
    runs = [out / "train", out / "faithfulness"]
    ground_truth = study.ground_truth
    if ground_truth and ground_truth.enabled:
        truth_dir = out / "ground_truth"
        # the controls explain the CNN like the post-hoc methods, into the ground-truth run's controls/
        for method in ground_truth.controls if "cnn" in models else []:
            run_dir = truth_dir / "controls" / f"cnn-{method}"
            overrides = ["model=cnn", f"method={method}", f"train_run={out / 'train' / 'cnn'}", *study.faithfulness,
                         *extra.faithfulness]
            steps.append(Step(f"faithfulness cnn / {method} (control)", FAITHFULNESS, overrides, run_dir,
                              run_dir / "summary.json"))
        steps.append(Step("ground truth", GROUND_TRUTH, [f"runs=[{out / 'faithfulness'},{truth_dir / 'controls'}]",
                                                         *ground_truth.overrides, *extra.ground_truth],
                          truth_dir, truth_dir / "ground_truth.json"))
        runs.append(truth_dir)
    steps.append(Step("report", REPORT, [f"runs=[{','.join(map(str, runs))}]", *study.report, *extra.report],
                      out / "report"))
    name = tracking.study_name(cfg)  # one W&B group for every step of the study
    for step in steps:
        step.study_name = name if step.module in (TRAIN, FAITHFULNESS, REPORT) else None
    return steps


def is_done(step: Step) -> bool:
    if step.done is None or not step.done.is_file():
        return False
    if step.module == FAITHFULNESS:  # an incomplete run is resumed by the entry point itself
        return bool(json.loads(step.done.read_text()).get("complete"))
    return True


@contextlib.contextmanager
def _outside_this_hydra_run() -> Iterator[None]:
    """``run_in_process`` composes the faithfulness config with a Hydra of its own, which refuses to
    start while this app's is set up: step out of it for the call, and back in."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved_hydra, saved_config = GlobalHydra.instance().hydra, HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().hydra = saved_hydra
        HydraConfig.instance().cfg = saved_config


def run_step(step: Step) -> None:
    if step.needs is not None and not step.needs.is_file():
        warm = step.needs.parents[1].name
        raise UsageError(f"warm start: {step.needs} not found; train {warm!r} first (include it in models=) "
                         "or drop the study's warm_start (study.warm_start=null)")
    if is_done(step):
        log.info("[skip] %s: done (%s)", step.title, step.done)
        return
    log.info("[run ] %s", step.title)
    start = time.perf_counter()
    overrides = [*step.overrides, f"study_name={step.study_name}"] if step.study_name else step.overrides
    if step.module == FAITHFULNESS:  # in this process: saves the ~6 s of imports a subprocess pays per approach
        from embryo_xai.faithfulness import run_in_process

        with _outside_this_hydra_run():
            run_in_process(overrides, step.run_dir)
    else:
        result = subprocess.run([sys.executable, "-m", step.module, *overrides, f"hydra.run.dir={step.run_dir}"])
        if result.returncode != 0:  # the step printed its own error above
            raise UsageError(f"step '{step.title}' failed (exit {result.returncode}); its log: {step.run_dir}")
    log.info("[done] %s in %.0f s", step.title, time.perf_counter() - start)


@hydra.main(version_base="1.3", config_path="../conf", config_name="main")
@exit_on_usage_error
def main(cfg: DictConfig) -> None:
    started = time.perf_counter()
    steps = plan_steps(cfg)
    for step in steps:
        run_step(step)
    report_dir = steps[-1].run_dir
    print(f"\nstudy finished in {time.perf_counter() - started:.0f} s")
    table = report_dir / "table1.md"
    if table.is_file():
        print("\nTable 1 (synthetic demo set)\n" + table.read_text())
    print(f"report: {report_dir / 'report.md'} (and report.html)")


if __name__ == "__main__":
    main()
