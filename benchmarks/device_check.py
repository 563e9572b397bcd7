"""Prepared accelerator check (issue 16): the GPU figures the README lacks, in at most 8 minutes.

    make device-check                                 # python -m benchmarks.device_check, on CUDA
    python -m benchmarks.device_check --reduced       # the same code paths on the CPU, tiny sizes (< 1 min)
    python -m benchmarks.device_check --parts engine explainers

Parts, each under its own time budget (loops stop at the budget, SIGALRM stops a part that overruns
it; a failed part records its error and the run goes on; the JSON is rewritten after every part, so
a run killed from outside keeps what it measured):

1. ``cuda_paths``: the device code paths work, pass/fail per item: ``batch_size: auto``; every
   explainer in float32 (maps against the CPU's, TF32 off, Pearson >= 0.99; RISE draws its masks on
   the device, so only finite maps) and under bf16 autocast; the metric engine in float32 (forwards
   counted, values against the CPU's) and bf16; a Lightning ``fast_dev_run`` of every model in
   bf16-mixed.
2. ``training``: images/s of a training step (forward, the model's loss, backward, SGD), ResNet-50
   at 448 px in bf16 autocast + channels-last, for the CNN and BR-NPA: on device tensors (the model
   alone) and fed by the DataModule from synthetic 500 px JPEGs (loader included).
3. ``engine``: the faithfulness engine (all 7 metrics, 14x14 maps) at 448 px on ResNet-50: forwards/s
   against the bare model's at the batch size ``auto`` picked, bf16 and float32, peak memory.
4. ``compile``: the engine with ``compile_mode`` default / reduce-overhead (CUDA graphs) against
   ``off``: compile time, forwards/s, max |difference| of the values (skipped in the reduced mode:
   inductor compiles for minutes on a CPU).
5. ``explainers``: Score-CAM (all 2048 layer4 channels) and RISE (4000 masks) images/s and peak
   memory at 448, bf16 and float32, ``batch_size: auto``.
6. ``projection``: wall time of the paper's protocol (9 approaches x 7 metrics) on 100 images and on
   the 28 282 test images from those figures, and the fraction of the card's dense bf16 peak reached
   (model FLOPs counted by ``torch.utils.flop_counter`` times forwards/s).

Writes ``bench_results/device_check.json`` and ``.csv`` (``--reduced``: ``device_check_reduced.*``)
and prints a table. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS
on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import io
import logging
import math
import os
import signal
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from benchmarks.bench_explainers import varying_channels
from benchmarks.bench_metrics import (
    PAPER_APPROACH_MAPS,
    PAPER_SAMPLE_IMAGES,
    PAPER_TEST_IMAGES,
    bare_throughput,
    build_model,
    flatten,
    random_inputs,
    reset_peak_rss,
    rss_mb,
    synchronize,
    timed,
)
from benchmarks.common import RESULTS, machine
from embryo_xai.device import AUTO, DEFAULT_BATCH_SIZE, resolve_batch_size
from embryo_xai.errors import one_line
from embryo_xai.explainers import create_explainer, explainer_class, list_explainers
from embryo_xai.metrics import METRIC_NAMES, faithfulness, forward_passes_per_image
from embryo_xai.metrics.engine import pearson
from embryo_xai.models import create_model, list_models

REPO = Path(__file__).resolve().parents[1]
#: Dense (no sparsity) bf16 tensor-core TFLOPS from the vendors' datasheets, by a substring of
#: ``torch.cuda.get_device_name()``; the first match wins (specific names first). Unknown: null.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
)
#: Native map side of each approach at 448 px. bench_metrics' table still has RISE at 7x7; RISE now
#: renders at the CNN's feature-map resolution (``map_size: features``, 14x14 at 448).
APPROACH_MAPS = {**PAPER_APPROACH_MAPS, "CNN/RISE": 14}
#: Explainer cost of the approaches not timed here, in forward-pass equivalents at the bare rate:
#: AM and the attention models' own maps one forward, Grad-CAM++ a forward and a backward (~3),
#: Ablation-CAM one forward (its 2048 head-only re-runs are not counted). Score-CAM and RISE: measured.
EXPLAINER_FORWARDS = {"CNN/AM": 1, "CNN/Grad-CAM++": 3, "CNN/Ablation-CAM": 1, "ABN": 1, "InterByParts": 1,
                      "B-CNN": 1, "BR-NPA": 1}
PARTS = ("cuda_paths", "training", "engine", "compile", "explainers", "projection")
log = logging.getLogger("device_check")


@dataclass
class Settings:
    """Sizes of one mode. Full: the paper's models on a GPU; reduced: the same code paths, tiny."""

    reduced: bool
    device: str
    backbone: str = "resnet50"  # the timed models' backbone
    size: int = 448  # their input side
    data_size: int = 500  # side of the synthetic JPEGs the loader reads (crops of ``size``)
    data_videos: int = 12
    data_frames: int = 48
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    train_batch: int = 32
    train_steps: int = 300  # timed steps per measurement, at most (the budget may stop it earlier)
    train_warmup: int = 10
    engine_images: int = 16
    engine_map: int = 14
    engine_rounds: int = 2
    explain_images: int = 1
    rise_masks: int = 4000
    check_backbone: str = "resnet18"  # the code-path checks' small models
    check_size: int = 64
    check_stride: int = 16
    check_rise_masks: int = 64
    total_s: float = 460.0  # of the 8 minutes; imports and CUDA start-up come before
    budgets: dict[str, float] = field(default_factory=lambda: {
        "cuda_paths": 60.0, "training": 130.0, "engine": 60.0, "compile": 100.0, "explainers": 50.0,
        "projection": 25.0})
    hard_grace_s: float = 10.0  # past its budget, a part is stopped by SIGALRM

    @classmethod
    def for_mode(cls, reduced: bool, device: str) -> Settings:
        if not reduced:
            return cls(reduced=False, device=device)
        return cls(reduced=True, device=device, backbone="resnet10t", size=64, data_size=80, data_videos=4,
                   data_frames=12, workers=0, train_batch=4, train_steps=3, train_warmup=1, engine_images=2,
                   engine_map=4, engine_rounds=1, explain_images=1, rise_masks=16, check_backbone="resnet10t",
                   # generous: the reduced mode proves code paths (in the test suite, on a busy CPU), it times nothing
                   check_rise_masks=16, total_s=1800.0,
                   budgets={name: 300.0 for name in PARTS}, hard_grace_s=30.0)


class PartTimeout(Exception):
    """A part ran past its budget and grace."""


class Budget:
    """Seconds left to a part (soft: loops stop at 0) or to the whole run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self, reserve: float = 0.0) -> bool:
        return self.left() <= reserve


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise :class:`PartTimeout` in the main thread after ``seconds`` (no-op in other threads)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise PartTimeout(f"stopped after {seconds:.0f} s (budget and grace spent)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.1))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Context:
    settings: Settings
    device: torch.device
    tmp: Path
    results: dict
    datasets: dict[int, Path] = field(default_factory=dict)

    def dataset(self, size: int, videos: int, frames: int) -> Path:
        """A synthetic data set of ``videos`` x ``frames`` frames at ``size`` px, generated once."""
        if size not in self.datasets:
            from embryo_xai.data.synthetic import generate_dataset

            self.datasets[size] = generate_dataset(self.tmp / f"synthetic{size}", videos=videos, seed=0, size=size,
                                                   frames_per_video=frames, workers=max(1, self.settings.workers),
                                                   progress=False)
        return self.datasets[size]

    def rows(self, section: str) -> list[dict]:
        return self.results["sections"].get(section, {}).get("rows", [])


# ---------------------------------------------------------------------------------------------- helpers
def bf16_peak_tflops(device_name: str) -> float | None:
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16: autocast, as ``precision=bf16`` runs the study; float32: nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepared(model: nn.Module, images: torch.Tensor | None, precision: str) -> tuple[nn.Module, torch.Tensor | None]:
    """bf16 rows run channels-last (model, in place, and images), as the study's bf16 runs."""
    layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
    return model.to(memory_format=layout), None if images is None else images.contiguous(memory_format=layout)


@contextlib.contextmanager
def no_tf32():
    """Exact float32 on CUDA (TF32 off) for comparisons with the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class PeakMemory:
    """Peak memory of a block in MiB: ``max_memory_allocated`` on CUDA, the process's peak RSS on the
    CPU (since the block's start where Linux lets us reset it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            reset_peak_rss()
            self.before = rss_mb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        return None

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return rss_mb("VmHWM")


@contextlib.contextmanager
def counting_rows(model: nn.Module):
    """Rows of every ``model(x)`` call and the largest one (the batch size a chunked loop used)."""
    counts = {"rows": 0, "largest": 0, "calls": 0}

    def count(module, args):
        counts["rows"] += args[0].shape[0]
        counts["largest"] = max(counts["largest"], args[0].shape[0])
        counts["calls"] += 1

    handle = model.register_forward_pre_hook(count)
    try:
        yield counts
    finally:
        handle.remove()


def forward_flops(model: nn.Module, size: int, device: torch.device) -> float:
    """FLOPs of one image's forward pass (2 per multiply-add), counted by PyTorch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size, device=device))
    return float(counter.get_total_flops())


def tflops_row(images_per_s: float, flops_per_image: float, peak: float | None) -> dict:
    achieved = images_per_s * flops_per_image / 1e12
    return {"achieved_tflops": achieved, "bf16_peak_fraction": None if peak is None else achieved / peak}


def free_device(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def map_agreement(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Smallest per-image Pearson of two map batches; constant maps agree only with an equal map."""
    ours, reference = ours.flatten(1).double().cpu(), reference.flatten(1).double().cpu()
    corr = pearson(ours, reference)
    same = torch.isclose(ours, reference, atol=1e-6).all(dim=1)
    return float(torch.where(torch.isnan(corr), same.double(), corr).min())


def check_model(name: str, backbone: str, stride: int, device: torch.device) -> nn.Module:
    """A small random model with a sharpened head (peaked logits, as a trained model's)."""
    torch.manual_seed(0)
    kwargs = {"output_stride": stride} if name == "cnn" else {}
    model = create_model(name, backbone=backbone, **kwargs).eval().to(device)
    head = getattr(getattr(model, "head", None), "fc", None)
    if head is not None:
        with torch.no_grad():
            head.weight.mul_(20)
    return model


# ---------------------------------------------------------------------------------------------- 1. code paths
def cuda_paths(ctx: Context, part: Budget, section: dict) -> None:
    s, device = ctx.settings, ctx.device
    items: list[dict] = section.setdefault("items", [])
    on_cpu = device.type == "cpu"

    def check(name: str, run: Callable[[], dict | None]) -> None:
        if part.expired():
            items.append({"name": name, "passed": False, "error": "not run: the part's budget was spent"})
            return
        start = time.perf_counter()
        try:
            detail = run() or {}
            items.append({"name": name, "passed": True, "seconds": time.perf_counter() - start, **detail})
        except PartTimeout:
            raise
        except Exception as error:  # noqa: BLE001 - recorded, the check goes on
            items.append({"name": name, "passed": False, "seconds": time.perf_counter() - start,
                          "error": one_line(error, 300)})
        free_device(device)

    generator = torch.Generator().manual_seed(0)
    images_cpu = torch.rand(2, 3, s.check_size, s.check_size, generator=generator)
    images = images_cpu.to(device)
    cnn = check_model("cnn", s.check_backbone, s.check_stride, device)
    cnn_cpu = None if on_cpu else check_model("cnn", s.check_backbone, s.check_stride, torch.device("cpu"))

    def auto_batch() -> dict:
        picked = resolve_batch_size(AUTO, images)
        assert resolve_batch_size(7, images) == 7, "an int batch_size is not used as given"
        if on_cpu:
            assert picked == DEFAULT_BATCH_SIZE, f"auto on the CPU gave {picked}, not {DEFAULT_BATCH_SIZE}"
        assert picked >= 1
        return {"auto_batch_size": picked}

    check("batch_size auto", auto_batch)

    def options(method: str) -> dict:
        return {"num_masks": s.check_rise_masks} if method == "rise" else {}

    cnn_methods = [m for m in list_explainers() if explainer_class(m).cannot_explain(cnn) is None]
    for method in cnn_methods:
        def explain_float32(method=method) -> dict:
            with no_tf32():
                maps = create_explainer(method, batch_size=AUTO, **options(method))(cnn, images)
                assert maps.shape[0] == len(images) and maps.ndim == 3, f"maps of shape {tuple(maps.shape)}"
                assert bool(torch.isfinite(maps).all()), "non-finite map values"
                if cnn_cpu is None or method == "rise":  # RISE's masks come from the device's generator
                    return {"map_shape": list(maps.shape[1:])}
                reference = create_explainer(method, **options(method))(cnn_cpu, images_cpu)
            agreement = map_agreement(maps, reference)
            assert agreement >= 0.99, f"maps vs the CPU's: Pearson {agreement:.4f} < 0.99"
            return {"map_shape": list(maps.shape[1:]), "pearson_vs_cpu": agreement}

        check(f"explain {method} float32", explain_float32)
    for method in cnn_methods:
        def explain_bf16(method=method) -> dict:
            model, inputs = prepared(cnn, images, "bf16")
            explainer = create_explainer(method, batch_size=AUTO, **options(method))
            try:
                with precision_context(device, "bf16"):
                    maps = explainer(model, inputs)
                exact = explainer(*prepared(cnn, images, "float32"))
            finally:
                prepared(cnn, images, "float32")
            assert maps.dtype == torch.float32 and bool(torch.isfinite(maps).all()), "non-finite or non-float32 maps"
            return {"pearson_vs_float32": map_agreement(maps, exact)}

        check(f"explain {method} bf16", explain_bf16)
    for name in list_models():
        model = check_model(name, s.check_backbone, s.check_stride, device)
        if name == "cnn" or explainer_class("attention").cannot_explain(model) is not None:
            continue

        def explain_attention(model=model) -> dict:
            with precision_context(device, "bf16"):
                maps = create_explainer("attention")(model, images)
            assert maps.ndim == 3 and bool(torch.isfinite(maps).all()), "attention maps not finite"
            return {"map_shape": list(maps.shape[1:])}

        check(f"explain attention ({name}) bf16", explain_attention)

    maps = torch.rand(len(images), 4, 4, generator=generator)

    def engine_float32() -> dict:
        with no_tf32(), counting_rows(cnn) as counts:
            values = faithfulness(cnn, images, maps.to(device), batch_size=AUTO)
        expected = len(images) * forward_passes_per_image((4, 4), METRIC_NAMES)
        assert counts["rows"] == expected, f"{counts['rows']} forwards, expected {expected}"
        for name in ("dauc", "iauc"):
            assert bool(((values[name] >= 0) & (values[name] <= 1)).all()), f"{name} outside [0, 1]"
        detail = {"forwards": counts["rows"], "batch_size": counts["largest"]}
        if cnn_cpu is not None:
            reference = faithfulness(cnn_cpu, images_cpu, maps)
            diff = max(float((values[k].cpu() - reference[k]).abs().nan_to_num(0).max()) for k in METRIC_NAMES)
            same_nan = all(bool((values[k].cpu().isnan() == reference[k].isnan()).all()) for k in METRIC_NAMES)
            assert diff <= 1e-2 and same_nan, f"values vs the CPU's: max |diff| {diff:.3g}, NaNs equal {same_nan}"
            detail["max_abs_diff_vs_cpu"] = diff
        return detail

    def engine_bf16() -> dict:
        model, inputs = prepared(cnn, images, "bf16")
        try:
            with precision_context(device, "bf16"):
                values = faithfulness(model, inputs, maps.to(device), batch_size=AUTO)
        finally:
            prepared(cnn, images, "float32")
        for name in ("dauc", "iauc", "ad"):
            assert bool(torch.isfinite(values[name]).all()), f"{name} not finite under bf16"
        return {"dauc": values["dauc"].tolist()}

    check("engine float32", engine_float32)
    check("engine bf16", engine_bf16)

    root = ctx.dataset(max(s.check_size + 16, 80), videos=4, frames=12)
    for name in list_models():
        check(f"fast_dev_run {name} bf16-mixed", lambda name=name: fast_dev_run(ctx, name, root))
    section["passed"] = sum(item["passed"] for item in items)
    section["failed"] = sum(not item["passed"] for item in items)


def fast_dev_run(ctx: Context, model: str, root: Path) -> dict:
    """One training, validation and test batch of ``model`` through Lightning, bf16-mixed."""
    from embryo_xai.train import train
    from embryo_xai.utils import compose_job

    s = ctx.settings
    trainer = ["trainer=cpu"] if ctx.device.type == "cpu" else ["trainer=gpu"]
    out = ctx.tmp / "fast_dev_run" / model
    cfg = compose_job("train", [
        f"model={model}", f"model.net.backbone={s.check_backbone}", f"data.root={root}",
        "data.generate_if_missing=false", f"data.crop_size={s.check_size}", "data.batch_size=4",
        "data.num_workers=0", "data.frame_step=1", "data.val_fraction=0.25", "data.test_fraction=0.25",
        *trainer, "trainer.precision=bf16-mixed", "logger=none", "callbacks=none", "+trainer.fast_dev_run=true",
        "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        f"paths.log_dir={ctx.tmp / 'logs'}"], output_dir=out, root_dir=REPO)
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = train(cfg)
    accuracy = metrics.get("test/acc_video")
    assert accuracy is not None and 0 <= accuracy <= 1, f"test/acc_video = {accuracy}"
    return {"test_acc_video": accuracy}


# ---------------------------------------------------------------------------------------------- 2. training
def lit_module(ctx: Context, model: str):
    """The model's LightningModule as ``conf/model/<model>.yaml`` builds it: channels-last, no scheduler."""
    import hydra

    from embryo_xai.utils import compose_job

    cfg = compose_job("train", [f"model={model}", f"model.net.backbone={ctx.settings.backbone}",
                                "model.channels_last=true", "model.scheduler=none"],
                      output_dir=ctx.tmp / "lit" / model, root_dir=REPO)
    module = hydra.utils.instantiate(cfg.model, _convert_="all")
    module.setup("fit")
    return module.to(ctx.device).train()


def train_step(module, optimizer, batch: dict, device: torch.device) -> torch.Tensor:
    with precision_context(device, "bf16"):
        loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def train_flops_per_image(module, batch: dict, device: torch.device) -> float:
    """FLOPs of a training step (forward, loss, backward) per image."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, precision_context(device, "bf16"):
        loss = module.training_step(batch, 0)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()) / len(batch["label"])


def device_batches(batch_size: int, size: int, device: torch.device):
    images = torch.rand(batch_size, 3, size, size, device=device)
    labels = torch.randint(0, 16, (batch_size,), device=device)
    while True:
        yield {"image": images, "label": labels}


def loader_batches(ctx: Context, root: Path, batch_size: int):
    """DataModule batches (random crops of the JPEGs), moved and converted as Lightning does."""
    from embryo_xai.data.datamodule import EmbryoDataModule

    s = ctx.settings
    dm = EmbryoDataModule(root=str(root), generate_if_missing=False, crop_size=s.size, batch_size=batch_size,
                          num_workers=s.workers, frame_step=1, persistent_workers=s.workers > 0,
                          test_fraction=0.1 if not s.reduced else 0.25, val_fraction=0.1 if not s.reduced else 0.25)
    dm.setup()
    loader = dm.train_dataloader()
    if len(loader) == 0:
        raise RuntimeError(f"the synthetic training split holds fewer than {batch_size} frames")
    while True:
        for batch in loader:
            batch = {k: v.to(ctx.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            yield dm.on_after_batch_transfer(batch, 0)


def measure_training(ctx: Context, model: str, source: str, budget: Budget, root: Path) -> dict:
    s, device = ctx.settings, ctx.device
    batch_size = s.train_batch
    for attempt in range(2):  # an out-of-memory batch is halved once
        module = optimizer = batches = None
        try:
            module = lit_module(ctx, model)
            optimizer = module.configure_optimizers()
            batches = device_batches(batch_size, s.size, device) if source == "device tensors" else \
                loader_batches(ctx, root, batch_size)
            flops = train_flops_per_image(module, next(device_batches(2, s.size, device)), device)
            for _ in range(s.train_warmup):
                train_step(module, optimizer, next(batches), device)
            synchronize(device)
            with PeakMemory(device) as memory:
                start, steps = time.perf_counter(), 0
                while steps < s.train_steps and (steps == 0 or not budget.expired()):
                    loss = train_step(module, optimizer, next(batches), device)
                    steps += 1
                synchronize(device)
                seconds = time.perf_counter() - start
            assert math.isfinite(float(loss)), "non-finite training loss"
            ips = steps * batch_size / seconds
            return {"model": model, "input": source, "backbone": s.backbone, "size": s.size,
                    "batch_size": batch_size, "workers": s.workers if source != "device tensors" else 0,
                    "steps": steps, "seconds": seconds, "images_per_s": ips, "peak_memory_mib": memory.peak_mib(),
                    "train_gflops_per_image": flops / 1e9,
                    **tflops_row(ips, flops, ctx.results["bf16_peak_tflops"])}
        except torch.cuda.OutOfMemoryError:
            if attempt or batch_size == 1:
                raise
            batch_size //= 2
        finally:
            del module, optimizer, batches
            free_device(device)
    raise AssertionError("unreachable")


def training(ctx: Context, part: Budget, section: dict) -> None:
    s = ctx.settings
    root = ctx.dataset(s.data_size, s.data_videos, s.data_frames)
    rows = section.setdefault("rows", [])
    jobs = [(model, source) for model in ("cnn", "brnpa")
            for source in ("device tensors", f"DataModule, {s.data_size} px JPEGs")]
    for index, (model, source) in enumerate(jobs):
        # each measurement gets an equal share of what is left (minus warm-up and build time)
        share = Budget(max(part.left() / (len(jobs) - index) - (10 if not s.reduced else 0), 1.0))
        try:
            rows.append(measure_training(ctx, model, source, share, root))
        except PartTimeout:
            raise
        except Exception as error:  # noqa: BLE001
            rows.append({"model": model, "input": source, "error": one_line(error, 300)})


# ---------------------------------------------------------------------------------------------- 3. engine
def engine_inputs(ctx: Context) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    s = ctx.settings
    model = build_model(s.backbone, ctx.device)
    images, maps = random_inputs(s.engine_images, s.size, s.engine_map, ctx.device)
    return model, images, maps


def engine(ctx: Context, part: Budget, section: dict) -> None:
    s, device = ctx.settings, ctx.device
    model, images, maps = engine_inputs(ctx)
    flops = forward_flops(model, s.size, device)
    section["forward_gflops"] = flops / 1e9
    rows = section.setdefault("rows", [])
    forwards = len(images) * forward_passes_per_image((s.engine_map,) * 2, METRIC_NAMES)
    for precision in ("bf16", "float32"):
        if part.expired(reserve=5) and rows:
            rows.append({"precision": precision, "error": "not run: the part's budget was spent"})
            continue
        net, inputs = prepared(model, images, precision)
        with precision_context(device, precision):
            faithfulness(net, inputs[:1], maps[:1], batch_size=AUTO)  # warm-up: kernels, allocator
            picked, runs = resolve_batch_size(AUTO, inputs), []
            for _ in range(s.engine_rounds):
                with PeakMemory(device) as memory, counting_rows(net) as counts:
                    seconds, _ = timed(functools.partial(faithfulness, net, inputs, maps, batch_size=AUTO), device)
                runs.append((seconds, dict(counts), memory.peak_mib()))
                if part.expired(reserve=part.seconds / 3):
                    break
            seconds, counts, peak = min(runs, key=lambda run: run[0])
            bare = bare_throughput(net, counts["largest"], s.size, device, repeats=3 if s.reduced else 5)
        assert counts["rows"] == forwards, f"{counts['rows']} forwards, expected {forwards}"
        fps = forwards / seconds
        rows.append({"precision": precision, "channels_last": precision == "bf16", "backbone": s.backbone,
                     "size": s.size, "map": s.engine_map, "images": len(images), "metrics": len(METRIC_NAMES),
                     "forwards": forwards, "batch_size": picked, "largest_chunk": counts["largest"],
                     "rounds": len(runs), "seconds": seconds,
                     "engine_fps": fps, "bare_fps": bare, "efficiency": fps / bare, "peak_memory_mib": peak,
                     **tflops_row(fps, flops, ctx.results["bf16_peak_tflops"])})
    prepared(model, images, "float32")


def compile_part(ctx: Context, part: Budget, section: dict) -> None:
    """``compile_mode`` against off, bf16 + channels-last: compile time, steady forwards/s, values."""
    s, device = ctx.settings, ctx.device
    rows = section.setdefault("rows", [])
    modes = ("reduce-overhead", "default")  # CUDA graphs first: the engine's chunks have one static shape
    if s.reduced:
        rows.extend({"compile_mode": mode, "skipped": "reduced mode: inductor compiles for minutes on a CPU"}
                    for mode in modes)
        return
    model, images, maps = engine_inputs(ctx)
    net, inputs = prepared(model, images, "bf16")
    forwards = len(images) * forward_passes_per_image((s.engine_map,) * 2, METRIC_NAMES)
    with precision_context(device, "bf16"):
        faithfulness(net, inputs[:1], maps[:1], batch_size=AUTO)  # warm-up, when the engine part did not run
        off_seconds, reference = timed(functools.partial(faithfulness, net, inputs, maps, batch_size=AUTO), device)
    picked = resolve_batch_size(AUTO, inputs)
    for mode in modes:
        if part.expired(reserve=20):
            rows.append({"compile_mode": mode, "error": "not run: the part's budget was spent"})
            continue
        torch._dynamo.reset()
        try:
            with precision_context(device, "bf16"):
                run = functools.partial(faithfulness, net, inputs, maps, batch_size=AUTO, compile_mode=mode)
                first, _ = timed(run, device)
                with PeakMemory(device) as memory:
                    seconds, values = timed(run, device)
            diff = max(float((values[k] - reference[k]).abs().nan_to_num(0).max()) for k in METRIC_NAMES)
            rows.append({"compile_mode": mode, "batch_size": picked, "first_call_seconds": first, "seconds": seconds,
                         "engine_fps": forwards / seconds, "off_fps": forwards / off_seconds,
                         "speedup_vs_off": off_seconds / seconds, "max_abs_diff_vs_off": diff,
                         "peak_memory_mib": memory.peak_mib()})
        except PartTimeout:
            rows.append({"compile_mode": mode, "error": "stopped: the part's budget was spent while compiling"})
            raise
        except Exception as error:  # noqa: BLE001
            rows.append({"compile_mode": mode, "error": one_line(error, 300)})
        finally:
            torch._dynamo.reset()
            free_device(device)


# ---------------------------------------------------------------------------------------------- 5. explainers
def explainers(ctx: Context, part: Budget, section: dict) -> None:
    s, device = ctx.settings, ctx.device
    model = build_model(s.backbone, device)
    images = torch.rand(s.explain_images, 3, s.size, s.size, generator=torch.Generator().manual_seed(1)).to(device)
    rows = section.setdefault("rows", [])
    for precision in ("bf16", "float32"):
        net, inputs = prepared(model, images, precision)
        for method, options in (("scorecam", {}), ("rise", {"num_masks": s.rise_masks})):
            if part.expired(reserve=2) and rows:
                rows.append({"method": method, "precision": precision, "error": "not run: budget spent"})
                continue
            try:
                rows.append(measure_explainer(ctx, net, inputs, method, precision, options))
            except PartTimeout:
                raise
            except Exception as error:  # noqa: BLE001
                rows.append({"method": method, "precision": precision, "error": one_line(error, 300)})
            free_device(device)
    prepared(model, images, "float32")


def measure_explainer(ctx: Context, net: nn.Module, inputs: torch.Tensor, method: str, precision: str,
                      options: dict) -> dict:
    s, device = ctx.settings, ctx.device
    explainer = create_explainer(method, batch_size=AUTO, **options)
    picked = explainer.chunk_size(inputs)
    with precision_context(device, precision):
        with torch.inference_mode():  # warm-up at the chunk size: kernels, allocator
            net(inputs[:1].expand(picked, -1, -1, -1))
        with PeakMemory(device) as memory, counting_rows(net) as counts:
            seconds, maps = timed(functools.partial(explainer, net, inputs), device)
    assert bool(torch.isfinite(maps).all()), f"{method} maps not finite"
    row = {"method": method, "precision": precision, "backbone": s.backbone, "size": s.size,
           "images": len(inputs), "seconds": seconds, "images_per_s": len(inputs) / seconds,
           "forwards_per_image": counts["rows"] / len(inputs), "batch_size": picked,
           "largest_chunk": counts["largest"], "peak_memory_mib": memory.peak_mib(),
           "memory_before_mib": memory.before}
    if method == "scorecam":  # counted as the explainer counts them: same precision, same layout
        with precision_context(device, precision):
            row["varying_channels"] = varying_channels(net, inputs)
            with torch.inference_mode():
                row["channels"] = int(net.forward_features(inputs[:1]).shape[1])
    else:
        row["masks"] = s.rise_masks
    return row


# ---------------------------------------------------------------------------------------------- 6. projection
def projection(ctx: Context, part: Budget, section: dict) -> None:
    """Hours of the paper's protocol from the measured rates (bf16 preferred)."""
    s, device = ctx.settings, ctx.device
    peak = ctx.results["bf16_peak_tflops"]
    engine_rows = [r for r in ctx.rows("engine") if "engine_fps" in r]
    row = next((r for r in engine_rows if r["precision"] == "bf16"), engine_rows[0] if engine_rows else None)
    cnn = build_model(s.backbone, device)
    flops = forward_flops(cnn, s.size, device)
    notes = []
    if row is None:  # the engine part failed: the bare rate, efficiency assumed 1
        net, _ = prepared(cnn, None, "bf16")
        with precision_context(device, "bf16"):
            bare = bare_throughput(net, 8 if s.reduced else 64, s.size, device, repeats=3)
        row = {"precision": "bf16", "engine_fps": bare, "bare_fps": bare, "batch_size": 8 if s.reduced else 64}
        notes.append("engine part missing: its rate taken as the bare model's")
    precision = row["precision"]
    brnpa = create_model("brnpa", backbone=s.backbone).eval().to(device)
    net, _ = prepared(brnpa, None, precision)
    with precision_context(device, precision):
        brnpa_fps = bare_throughput(net, min(row["batch_size"], 8 if s.reduced else 32), s.size, device, repeats=3)
    del brnpa, net
    free_device(device)
    brnpa_cost = row["bare_fps"] / brnpa_fps  # BR-NPA forward in CNN forwards (stride 8 is dearer)
    explain_rate = {r["method"]: r["images_per_s"] for r in ctx.rows("explainers")
                    if "images_per_s" in r and r["precision"] == precision}
    per_approach = {}
    for approach, side in APPROACH_MAPS.items():
        scale = brnpa_cost if approach == "BR-NPA" else 1.0
        metric_seconds = forward_passes_per_image((side, side), METRIC_NAMES) * scale / row["engine_fps"]
        measured = {"CNN/Score-CAM": "scorecam", "CNN/RISE": "rise"}.get(approach)
        if measured and measured in explain_rate:
            explain_seconds = 1 / explain_rate[measured]
        else:
            if measured:
                notes.append(f"{approach}: not measured, counted as {s.rise_masks if measured == 'rise' else 2048} "
                             "forwards")
            count = EXPLAINER_FORWARDS.get(approach) or (s.rise_masks if measured == "rise" else 2048)
            explain_seconds = count * scale / row["bare_fps"]
        per_approach[approach] = {"metric_forwards": forward_passes_per_image((side, side), METRIC_NAMES),
                                  "metric_seconds": metric_seconds, "explainer_seconds": explain_seconds}
    per_image = sum(a["metric_seconds"] + a["explainer_seconds"] for a in per_approach.values())
    section.update({
        "precision": precision, "engine_fps": row["engine_fps"], "bare_fps": row["bare_fps"],
        "brnpa_bare_fps": brnpa_fps, "forward_gflops": flops / 1e9, "approaches": len(per_approach),
        "metrics": len(METRIC_NAMES), "per_approach": per_approach, "seconds_per_image_all_approaches": per_image,
        "rows": [{"images": n, "hours": per_image * n / 3600} for n in (PAPER_SAMPLE_IMAGES, PAPER_TEST_IMAGES)],
        "engine": tflops_row(row["engine_fps"], flops, peak),
        "notes": notes + ["ABN, InterByParts and B-CNN forwards counted at the CNN's rate; BR-NPA's measured",
                          "explainers other than Score-CAM and RISE: forward equivalents at the bare rate"],
    })


FUNCTIONS: dict[str, Callable[[Context, Budget, dict], None]] = {
    "cuda_paths": cuda_paths, "training": training, "engine": engine, "compile": compile_part,
    "explainers": explainers, "projection": projection}


# ---------------------------------------------------------------------------------------------- driver
def run_part(ctx: Context, name: str, total: Budget) -> None:
    s = ctx.settings
    budget_s = min(s.budgets[name], total.left() - 2)
    section = ctx.results["sections"][name] = {"status": "running", "budget_s": budget_s}
    if budget_s < 1:
        section.update(status="skipped", error="the run's total budget was spent")
        return
    part = Budget(budget_s)
    print(f"[device_check] {name} (budget {budget_s:.0f} s) ...", flush=True)
    try:
        with hard_limit(budget_s + s.hard_grace_s):
            FUNCTIONS[name](ctx, part, section)
        section["status"] = "ok"
    except PartTimeout as error:
        section.update(status="timeout", error=str(error))
    except Exception as error:  # noqa: BLE001 - a failed part records its error; the run goes on
        section.update(status="error", error=one_line(error, 300), traceback=traceback.format_exc()[-3000:])
    finally:
        section["seconds"] = part.elapsed()
        free_device(ctx.device)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table_rows(results: dict) -> list[tuple[str, str, str]]:
    """(part, item, result) lines of the printed table."""
    lines = []
    for name, section in results["sections"].items():
        status = section.get("status")
        if status != "ok":
            lines.append((name, f"[{status}]", section.get("error", "")))
        for item in section.get("items", []):
            result = "PASS" if item["passed"] else f"FAIL {item.get('error', '')}"
            lines.append((name, item["name"], f"{result} ({fmt(item.get('seconds'), 2)} s)"))
        for row in section.get("rows", []) if name != "projection" else []:
            label = " ".join(str(row[k]) for k in ("model", "input", "precision", "method", "compile_mode") if k in row)
            if "error" in row or "skipped" in row:
                lines.append((name, label, row.get("error") or f"skipped: {row['skipped']}"))
            elif name == "training":
                lines.append((name, f"{label}, batch {row['batch_size']}",
                              f"{fmt(row['images_per_s'])} img/s, peak {fmt(row['peak_memory_mib'])} MiB, "
                              f"{fmt(row['achieved_tflops'])} TFLOPS ({fmt(row['bf16_peak_fraction'])} of bf16 peak)"))
            elif name == "engine":
                lines.append((name, f"{label}, batch {row['batch_size']} (auto)",
                              f"{fmt(row['engine_fps'])} fwd/s vs bare {fmt(row['bare_fps'])} "
                              f"(efficiency {fmt(row['efficiency'])}), peak {fmt(row['peak_memory_mib'])} MiB, "
                              f"{fmt(row['bf16_peak_fraction'])} of bf16 peak"))
            elif name == "compile":
                lines.append((name, label, f"{fmt(row['engine_fps'])} fwd/s, {fmt(row['speedup_vs_off'])}x off, "
                                           f"compile {fmt(row['first_call_seconds'])} s, "
                                           f"max |diff| {fmt(row['max_abs_diff_vs_off'])}"))
            elif name == "explainers":
                what = f"{row['channels']} channels" if "channels" in row else f"{row['masks']} masks"
                lines.append((name, f"{label}, {what}, batch {row['batch_size']} (auto)",
                              f"{fmt(row['images_per_s'])} img/s, peak {fmt(row['peak_memory_mib'])} MiB"))
        if name == "projection" and status == "ok":
            for row in section["rows"]:
                lines.append((name, f"paper protocol, {row['images']:,} images",
                              f"{fmt(row['hours'])} h ({section['approaches']} approaches x {section['metrics']} "
                              f"metrics, {section['precision']})"))
            lines.append((name, "engine share of bf16 peak", f"{fmt(section['engine']['achieved_tflops'])} TFLOPS, "
                                                             f"{fmt(section['engine']['bf16_peak_fraction'])}"))
    return lines


def print_table(results: dict) -> None:
    mode = "reduced (CPU smoke run: figures not meaningful)" if results["settings"]["reduced"] else "full"
    print(f"\nDevice check on {results['machine']['device']} ({mode}), torch {results['machine']['torch']}, "
          f"bf16 peak {fmt(results['bf16_peak_tflops'])} TFLOPS, {results['total_seconds']:.0f} s")
    lines = table_rows(results)
    widths = [max(len(line[i]) for line in lines) for i in range(2)]
    for part, item, result in lines:
        print(f"  {part.ljust(widths[0])}  {item.ljust(widths[1])}  {result}")


def write_outputs(results: dict, out: Path) -> None:
    from embryo_xai.utils import write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), results)
    pairs: list[tuple[str, str]] = []
    flatten("", {k: v for k, v in results.items() if k != "settings"}, pairs)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "value"])
        writer.writerows(pairs)


@contextlib.contextmanager
def quiet():
    """Lightning's banners and the log-without-trainer warnings of a bare training_step."""
    import pytorch_lightning  # noqa: F401 - its import sets its loggers' levels: import first, then override
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning", "embryo_xai")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="tiny model and sizes: the code paths on the CPU")
    parser.add_argument("--device", help="default: cuda (cpu with --reduced)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", help="path prefix of the .json and .csv (default bench_results/device_check"
                                      "[_reduced])")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.reduced else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device_check: no CUDA device here; `python -m benchmarks.device_check --reduced` runs "
                         "the same code paths on the CPU")
    settings = Settings.for_mode(args.reduced, str(device))
    out = Path(args.out or RESULTS / ("device_check_reduced" if args.reduced else "device_check"))
    info = machine()
    results = {"machine": info, "settings": asdict(settings), "bf16_peak_tflops": bf16_peak_tflops(info["device"])
               if device.type == "cuda" else None, "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                                                           "matmul": torch.backends.cuda.matmul.allow_tf32},
               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_seconds": 0.0, "sections": {}}
    total = Budget(settings.total_s)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp, quiet():
        ctx = Context(settings, device, Path(tmp), results)
        for name in args.parts:
            run_part(ctx, name, total)
            results["total_seconds"] = total.elapsed()
            write_outputs(results, out)
    print_table(results)
    print(f"-> {out.with_suffix('.json')}, .csv")
    return results


if __name__ == "__main__":
    main()
