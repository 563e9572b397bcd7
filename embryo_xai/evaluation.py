"""Explain and score one approach (model + method) image by image, incrementally on disk.

Shared by ``python -m embryo_xai.faithfulness`` and the after-test ``FaithfulnessCallback``:
per-image rows (one per image x metric) are appended to ``faithfulness_rows.csv`` as soon as a
batch is scored, so an interrupted run resumes where it stopped and never recomputes a row.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from embryo_xai.analysis.spec import Approach
from embryo_xai.data.dataset import FrameDataset, to_model_input
from embryo_xai.data.stages import STAGES
from embryo_xai.errors import CheckpointError, UsageError, one_line
from embryo_xai.explainers import create_explainer, list_explainers
from embryo_xai.metrics import check_metric_names, faithfulness
from embryo_xai.models import create_model_for_weights
from embryo_xai.utils import write_json

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16")
ROWS_FILE = "faithfulness_rows.csv"
SUMMARY_FILE = "summary.json"
SETTINGS_FILE = "settings.json"
MAPS_DIR = "maps"
COLUMNS = ("approach", "model", "method", "image_id", "video", "run", "label", "stage", "prediction", "score",
           "metric", "value")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """An ``EmbryoLitModule`` checkpoint, loaded with weights_only=True; a missing, corrupt or foreign
    file raises a CheckpointError in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected a .ckpt written by "
                              "`python -m embryo_xai.train`, e.g. <run dir>/checkpoints/best.ckpt)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not ours"
        # torch.load's own message is a wall of unpickler text: one line says what the file is not
        raise CheckpointError(f"{path} is corrupt, truncated or not a PyTorch checkpoint ({one_line(error)})") from None
    net_cfg = (checkpoint.get("hyper_parameters") or {}).get("net") if isinstance(checkpoint, dict) else None
    if not isinstance(net_cfg, dict) or "name" not in net_cfg or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not an embryo_xai training checkpoint: expected 'state_dict' and "
                              "hyper_parameters['net'] with the model's create_model arguments")
    return checkpoint


def load_model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the classifier of an ``EmbryoLitModule`` checkpoint (loaded with weights_only=True)."""
    checkpoint = read_checkpoint(path, map_location)
    net_cfg = checkpoint["hyper_parameters"]["net"]
    num_classes = checkpoint["hyper_parameters"].get("num_classes", len(STAGES))
    model = create_model_for_weights(num_classes=num_classes, **net_cfg)  # the checkpoint holds the weights
    state = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match model {net_cfg['name']!r}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.eval(), net_cfg


def check_names(methods: Sequence[str], metrics: Sequence[str]) -> tuple[str, ...]:
    """Fail before any work on a method or metric name that does not exist (one clear line, naming the
    known ones); returns the normalised metric names."""
    unknown = [m for m in methods if m not in list_explainers()]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(map(repr, unknown))}; known methods: "
                         f"{', '.join(list_explainers())}")
    try:
        return check_metric_names(list(metrics))
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_method_applies(model: nn.Module, model_name: str, method: str) -> None:
    """``attention`` needs a model with its own attention map; post-hoc methods need feature maps."""
    check_names([method], ["dauc"])
    has_attention = bool(getattr(model, "has_attention", False))
    if method == "attention" and not has_attention:
        applies = [m for m in list_explainers() if m != "attention"]
        raise UsageError(f"method 'attention' does not apply to model {model_name!r}, which has no attention "
                         f"map; methods that apply: {', '.join(applies)}")


def sample_test_indices(n_available: int, n_images: int | str, seed: int) -> list[int]:
    """A seeded sample of test-set indices (sorted); ``"all"`` or a number >= the set's size = all."""
    if n_images == "all" or int(n_images) >= n_available:
        return list(range(n_available))
    if int(n_images) < 1:
        raise UsageError(f"n_images must be >= 1 or 'all', got {n_images}")
    chosen = np.random.default_rng(seed).choice(n_available, size=int(n_images), replace=False)
    return sorted(int(i) for i in chosen)


@dataclass
class ApproachRun:
    """Where and how one approach is evaluated."""

    out_dir: Path
    model_name: str
    method: str
    method_cfg: dict
    metric_names: tuple[str, ...]
    metric_cfg: dict
    batch_size: int = 16
    save_maps: bool = True
    #: "bf16": the model's forward passes under bf16 autocast (maps, scores and metric arithmetic
    #: stay float32); "32": everything float32
    precision: str = "32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.precision = str(self.precision)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def approach(self) -> Approach:
        return Approach(self.model_name, self.method)

    def settings(self, extra: dict) -> dict:
        return {"model": self.model_name, "method": self.method, "method_cfg": self.method_cfg,
                "metrics": list(self.metric_names), "metric_cfg": self.metric_cfg, "precision": self.precision,
                **extra}

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def finished_images(rows_path: Path, metric_names: Sequence[str]) -> set[int]:
    """Images whose every requested metric already has a row."""
    if not rows_path.is_file():
        return set()
    seen: dict[int, set[str]] = {}
    with open(rows_path, newline="") as handle:
        for row in csv.DictReader(handle):
            seen.setdefault(int(row["image_id"]), set()).add(row["metric"])
    return {image for image, metrics in seen.items() if set(metric_names) <= metrics}


def check_settings(out_dir: Path, settings: dict) -> None:
    """Refuse to mix rows computed under other settings into one results file."""
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise UsageError(f"{out_dir} holds results computed with other settings (differ in: {changed}); "
                             "give this variant its own run dir (faithfulness: run_name=<name>) or delete that one "
                             "to start over")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)


def score_batch(model: nn.Module, explainer, images: torch.Tensor, labels: torch.Tensor, run: ApproachRun
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Explain a batch and score its maps. Returns per-image metric values, predictions,
    explained-class scores and the maps."""
    with torch.inference_mode(), run.autocast(images.device):
        logits = model(images).float()
    predictions = logits.argmax(dim=1)
    explained = labels if run.metric_cfg.get("explained_class") == "label" else predictions
    use_logit = run.metric_cfg.get("score") == "logit"
    scores = (logits if use_logit else logits.softmax(dim=1)).gather(1, explained[:, None])[:, 0]
    engine_cfg = {k: v for k, v in run.metric_cfg.items() if k != "metrics"}
    with run.autocast(images.device):
        maps = explainer(model, images, explained)
        values = faithfulness(model, images, maps, explained, run.metric_names, **engine_cfg)
    return dict(values), predictions, scores, maps


def append_rows(rows_path: Path, rows: list[tuple]) -> None:
    new = not rows_path.is_file()
    with open(rows_path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def batch_rows(run: ApproachRun, dataset: FrameDataset, image_ids: Sequence[int], labels: list[int],
               predictions: list[int], scores: list[float], values: dict[str, list[float]]) -> list[tuple]:
    approach = run.approach
    rows = []
    for i, image_id in enumerate(image_ids):
        frame = dataset.frames[image_id]
        for metric in run.metric_names:
            rows.append((approach.label, run.model_name, run.method, image_id, frame.video, frame.run, labels[i],
                         STAGES[labels[i]], predictions[i], f"{scores[i]:.6g}", metric, f"{values[metric][i]:.8g}"))
    return rows


def evaluate_approach(model: nn.Module, dataset: FrameDataset, image_ids: Sequence[int], run: ApproachRun,
                      device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                      progress: bool = True) -> dict:
    """Explain and score ``image_ids`` of ``dataset``; rows appended under ``run.out_dir``.

    With ``world_size > 1`` (an initialised process group) each rank explains ``image_ids[rank::world]``
    and rank 0 gathers and writes every row, in the same order as a single process would.
    Returns the summary (also written to ``summary.json``).
    """
    out_dir = run.out_dir
    rows_path = out_dir / ROWS_FILE
    run.metric_names = check_names([run.method], run.metric_names)
    check_method_applies(model, run.model_name, run.method)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MAPS_DIR).mkdir(exist_ok=True)
    if world_size > 1:
        dist.barrier()
    done = finished_images(rows_path, run.metric_names)
    todo = [i for i in image_ids if i not in done]
    explainer = create_explainer(run.method, **{k: v for k, v in run.method_cfg.items() if k != "name"})
    model = model.to(device).eval()
    if run.channels_last:  # same numbers, faster convolutions with bf16 on CPUs and GPUs
        model = model.to(memory_format=torch.channels_last)
    batches = [todo[start:start + run.batch_size] for start in range(0, len(todo), run.batch_size)]
    bar = tqdm(total=len(todo), desc=f"{run.approach.label} ({run.model_name}/{run.method})", unit="img",
               disable=not progress or rank != 0, initial=0)
    for batch_ids in batches:
        mine = batch_ids[rank::world_size]
        payload = None
        if mine:
            samples = [dataset[i] for i in mine]
            images = to_model_input(torch.stack([s["image"] for s in samples]).to(device))
            if run.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = torch.tensor([s["label"] for s in samples], device=device)
            values, predictions, scores, maps = score_batch(model, explainer, images, labels, run)
            payload = (mine, labels.tolist(), predictions.tolist(), scores.tolist(),
                       {k: v.tolist() for k, v in values.items()}, maps.to(torch.float16).cpu().numpy())
        gathered = [payload]
        if world_size > 1:
            gathered = [None] * world_size if rank == 0 else None
            dist.gather_object(payload, gathered, dst=0)
        if rank == 0:
            # back into the batch order a single process would have used
            by_id = {image_id: (label, pred, score, {m: part[4][m][k] for m in run.metric_names}, part[5][k])
                     for part in gathered if part is not None
                     for k, (image_id, label, pred, score) in enumerate(zip(*part[:4]))}
            ids = [i for i in batch_ids if i in by_id]
            rows = batch_rows(run, dataset, ids, [by_id[i][0] for i in ids], [by_id[i][1] for i in ids],
                              [by_id[i][2] for i in ids],
                              {m: [by_id[i][3][m] for i in ids] for m in run.metric_names})
            if run.save_maps:
                np.savez(out_dir / MAPS_DIR / f"batch_{ids[0]:07d}.npz", image_id=np.asarray(ids),
                         maps=np.stack([by_id[i][4] for i in ids]))
            append_rows(rows_path, rows)  # after the maps: a row on disk means its map is too
        bar.update(len(batch_ids))
    bar.close()
    summary = None
    if rank == 0:
        summary = write_summary(out_dir, run, image_ids)
    if world_size > 1:
        dist.barrier()
    return summary or {}


def write_summary(out_dir: Path, run: ApproachRun, image_ids: Sequence[int]) -> dict:
    """Means and undefined counts over the requested images; ``maps.npz`` consolidated."""
    wanted = set(image_ids)
    values: dict[str, list[float]] = {m: [] for m in run.metric_names}
    with open(out_dir / ROWS_FILE, newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["image_id"]) in wanted and row["metric"] in values:
                values[row["metric"]].append(float(row["value"]))
    means = {m: (float(np.nanmean(v)) if v and not all(math.isnan(x) for x in v) else float("nan"))
             for m, v in values.items()}
    undefined = {m: int(sum(math.isnan(x) for x in v)) for m, v in values.items()}
    n_done = min((len(v) for v in values.values()), default=0)
    summary = {"approach": run.approach.label, "model": run.model_name, "method": run.method,
               "n_images": n_done, "n_requested": len(wanted), "means": means, "undefined": undefined,
               "complete": n_done == len(wanted)}
    if run.save_maps:
        consolidate_maps(out_dir)
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def consolidate_maps(out_dir: Path) -> None:
    parts = sorted((out_dir / MAPS_DIR).glob("batch_*.npz"))
    if not parts:
        return
    loaded = [np.load(p) for p in parts]
    ids = np.concatenate([part["image_id"] for part in loaded])
    maps = np.concatenate([part["maps"] for part in loaded])
    order = np.argsort(ids, kind="stable")
    tmp = out_dir / "maps.tmp.npz"
    np.savez_compressed(tmp, image_id=ids[order], maps=maps[order])
    tmp.replace(out_dir / "maps.npz")
