"""The evaluator: explain and score one approach (model + method) batch by batch, into a run dir.

Shared by ``python -m embryo_xai.faithfulness`` and the after-test ``FaithfulnessCallback``, which
both build it from the ``evaluation`` config group (``conf/evaluation/default.yaml``). Each
batch's rows (one per image x metric) are appended to the run (``embryo_xai.runs``) as soon as
it is scored, so an interrupted run resumes where it stopped and never recomputes a row.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from embryo_xai.analysis.spec import Approach
from embryo_xai.data.dataset import FrameDataset, to_model_input
from embryo_xai.data.stages import STAGES
from embryo_xai.errors import UsageError
from embryo_xai.explainers import create_explainer, explainer_class, list_explainers
from embryo_xai.metrics import FaithfulnessConfig, check_metric_names, faithfulness
from embryo_xai.runs import FaithfulnessRun

log = logging.getLogger(__name__)

#: Lightning's spellings (``trainer.precision``) are accepted for the evaluator's two precisions.
PRECISIONS = {"32": "32", "32-true": "32", "bf16": "bf16", "bf16-mixed": "bf16"}


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
    """A method that cannot explain the model (``attention`` on a model without one) fails before any work
    (the method's name is checked when its ``ApproachRun`` is built)."""
    problem = explainer_class(method).cannot_explain(model)
    if problem:
        raise UsageError(f"method {method!r} does not apply to model {model_name!r}: {problem}")


@dataclass
class EvaluationConfig:
    """How an approach is evaluated (``conf/evaluation/default.yaml``), shared by the entry point and
    the callback: which test images, how many at once, in which precision, and whether maps are kept."""

    n_images: int | str = 100  # a seeded sample of the test set (the paper's 100), or "all"
    sample_seed: int = 0
    batch_size: int = 16
    #: "bf16": the model's forward passes under bf16 autocast (maps, scores and metric arithmetic
    #: stay float32); "32": everything float32
    precision: str = "32"
    channels_last: bool = False
    save_maps: bool = True

    def __post_init__(self) -> None:
        if str(self.precision) not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self.precision = PRECISIONS[str(self.precision)]
        if int(self.batch_size) < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")

    def sample(self, n_available: int) -> list[int]:
        """The seeded sample of test-set indices (sorted); ``"all"`` or a number >= the set's size = all."""
        if self.n_images == "all" or int(self.n_images) >= n_available:
            return list(range(n_available))
        if int(self.n_images) < 1:
            raise UsageError(f"n_images must be >= 1 or 'all', got {self.n_images}")
        chosen = np.random.default_rng(self.sample_seed).choice(n_available, size=int(self.n_images), replace=False)
        return sorted(int(i) for i in chosen)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass
class ApproachRun:
    """One approach evaluated into one run dir: what is explained, how it is scored, and how."""

    run: FaithfulnessRun
    model_name: str
    method: str
    method_cfg: dict
    metric_names: tuple[str, ...]
    metric_cfg: dict
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        self.metric_names = check_names([self.method], self.metric_names)
        self.metric_cfg = {k: v for k, v in self.metric_cfg.items() if k != "metrics"}
        self.scorer = FaithfulnessConfig.from_kwargs(**self.metric_cfg).scorer

    @property
    def approach(self) -> Approach:
        return Approach(self.model_name, self.method)

    def claim(self, training: dict) -> None:
        """Record the settings the rows are computed under (or refuse a run computed under others).
        ``training``: the explained model's provenance (training run, checkpoint, accuracy, data)."""
        self.run.claim({"model": self.model_name, "method": self.method, "method_cfg": self.method_cfg,
                        "metrics": list(self.metric_names), "metric_cfg": self.metric_cfg,
                        "precision": self.evaluation.precision, "n_images": self.evaluation.n_images,
                        "sample_seed": self.evaluation.sample_seed, **training})


def score_batch(model: nn.Module, explainer, images: torch.Tensor, labels: torch.Tensor, run: ApproachRun
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Explain a batch and score its maps. Returns per-image metric values, predictions,
    explained-class scores and the maps."""
    with torch.inference_mode(), run.evaluation.autocast(images.device):
        logits = model(images).float()
    predictions = logits.argmax(dim=1)
    explained = run.scorer.explained(logits, labels)
    scores = run.scorer(logits, explained)
    with run.evaluation.autocast(images.device):
        maps = explainer(model, images, explained)
        values = faithfulness(model, images, maps, explained, run.metric_names, **run.metric_cfg)
    return dict(values), predictions, scores, maps


def batch_rows(run: ApproachRun, dataset: FrameDataset, image_ids: Sequence[int], labels: list[int],
               predictions: list[int], scores: list[float], values: dict[str, list[float]]) -> list[tuple]:
    """The run's rows (``runs.ROW_COLUMNS``) of one batch, metric-major as the report expects them."""
    rows = []
    for i, image_id in enumerate(image_ids):
        frame = dataset.frames[image_id]
        for metric in run.metric_names:
            rows.append((run.model_name, run.method, image_id, frame.video, frame.run, labels[i], STAGES[labels[i]],
                         predictions[i], f"{scores[i]:.6g}", metric, f"{values[metric][i]:.8g}"))
    return rows


def evaluate_approach(model: nn.Module, dataset: FrameDataset, image_ids: Sequence[int], run: ApproachRun,
                      device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                      progress: bool = True, on_batch: Callable[[int], None] | None = None) -> dict:
    """Explain and score ``image_ids`` of ``dataset`` into ``run.run`` (claimed by the caller).

    With ``world_size > 1`` (an initialised process group) each rank explains ``image_ids[rank::world]``
    and rank 0 gathers and writes every row, in the same order as a single process would.
    Returns the summary (also written to ``summary.json``). ``on_batch(images_done)`` is called on
    rank 0 after each batch is written (W&B progress).
    """
    out, evaluation = run.run, run.evaluation
    check_method_applies(model, run.model_name, run.method)
    if world_size > 1:
        dist.barrier()
    done = out.finished_images(run.metric_names)
    todo = [i for i in image_ids if i not in done]
    explainer = create_explainer(run.method, **{k: v for k, v in run.method_cfg.items() if k != "name"})
    model = model.to(device).eval()
    if evaluation.channels_last:  # same numbers, faster convolutions with bf16 on CPUs and GPUs
        model = model.to(memory_format=torch.channels_last)
    batches = [todo[start:start + evaluation.batch_size] for start in range(0, len(todo), evaluation.batch_size)]
    bar = tqdm(total=len(todo), desc=f"{run.approach.label} ({run.model_name}/{run.method})", unit="img",
               disable=not progress or rank != 0, initial=0)
    for batch_ids in batches:
        mine = batch_ids[rank::world_size]
        payload = None
        if mine:
            samples = [dataset[i] for i in mine]
            crops = torch.stack([s["image"] for s in samples])
            images = to_model_input(crops.to(device))
            if evaluation.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = torch.tensor([s["label"] for s in samples], device=device)
            values, predictions, scores, maps = score_batch(model, explainer, images, labels, run)
            payload = (mine, labels.tolist(), predictions.tolist(), scores.tolist(),
                       {k: v.tolist() for k, v in values.items()}, maps.to(torch.float16).cpu().numpy(),
                       crops[:, 0].numpy())
        gathered = [payload]
        if world_size > 1:
            gathered = [None] * world_size if rank == 0 else None
            dist.gather_object(payload, gathered, dst=0)
        if rank == 0:
            _write_batch(run, dataset, batch_ids, [part for part in gathered if part is not None])
        bar.update(len(batch_ids))
        if rank == 0 and on_batch is not None:
            on_batch(len(image_ids) - len(todo) + bar.n)  # resumed images count as done
    bar.close()
    summary = None
    if rank == 0:
        if evaluation.save_maps:
            out.consolidate_maps()
        summary = out.write_summary(run.model_name, run.method, run.metric_names, image_ids)
    if world_size > 1:
        dist.barrier()
    return summary or {}


def _write_batch(run: ApproachRun, dataset: FrameDataset, batch_ids: Sequence[int], parts: list[tuple]) -> None:
    """Rank 0: the gathered parts of one batch, back in the order a single process would have used."""
    by_id = {image_id: (label, pred, score, {m: part[4][m][k] for m in run.metric_names}, part[5][k], part[6][k])
             for part in parts for k, (image_id, label, pred, score) in enumerate(zip(*part[:4]))}
    ids = [i for i in batch_ids if i in by_id]
    rows = batch_rows(run, dataset, ids, [by_id[i][0] for i in ids], [by_id[i][1] for i in ids],
                      [by_id[i][2] for i in ids], {m: [by_id[i][3][m] for i in ids] for m in run.metric_names})
    if run.evaluation.save_maps:
        run.run.save_maps_part(ids, np.stack([by_id[i][4] for i in ids]), np.stack([by_id[i][5] for i in ids]))
    run.run.append(rows)  # after the maps: a row on disk means its map is too
