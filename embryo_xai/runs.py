"""Run directories: the one owner of their layout, writers and readers (docs/architecture.md, "Run directories").

A **training run** (``python -m embryo_xai.train``) holds the best checkpoint, the resolved config
beside it and the test results. A **faithfulness run** (one approach: model + method) holds one
row per image x metric, the explained crops and their maps, the settings it was computed under
and a summary. Every other module reads and writes runs through these two types.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from embryo_xai.errors import CheckpointError, UsageError
from embryo_xai.utils import write_json

#: Columns of ``faithfulness_rows.csv``: registry keys only (labels are the report's business).
ROW_COLUMNS = ("model", "method", "image_id", "video", "run", "label", "stage", "prediction", "score",
               "metric", "value")
IMAGE_COLUMNS = ("image_id", "video", "run", "label", "stage")
#: Columns of ``test_predictions.csv``: ``hours`` since insemination (NaN without a timing file) and the
#: ``decoded`` stage (the monotone Viterbi path of the video, ``morphokinetics.decode_monotone``; -1 when off).
PREDICTION_COLUMNS = ("video", "run", "label", "stage", "prediction", "hours", "decoded")


class RunFile:
    """A file (or folder) of a run, declared once by its relative path: ``run.<attr>`` is its path."""

    def __init__(self, relative: str, doc: str = "") -> None:
        self.relative, self.__doc__ = relative, doc

    def __get__(self, run: object, owner: type) -> Path:
        return self if run is None else run.dir / self.relative  # type: ignore[return-value]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _float(value: object) -> float:
    """A JSON number, with null (metric not computed) read as NaN."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class TrainingRun:
    """``<dir>/checkpoints/{best.ckpt,config.yaml}``, ``test_metrics.json``, ``test_predictions.csv``."""

    dir: Path
    checkpoint = RunFile("checkpoints/best.ckpt")
    #: the resolved training config, saved beside the checkpoint so a checkpoint explains itself
    config_file = RunFile("checkpoints/config.yaml")
    metrics_file = RunFile("test_metrics.json")
    predictions_file = RunFile("test_predictions.csv")

    def finished(self) -> bool:
        """Tested, with its best checkpoint on disk."""
        return self.metrics_file.is_file() and self.checkpoint.is_file()

    # -- writers (the train entry point) --------------------------------------------------------
    def write_config(self, cfg: DictConfig) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.config_file, resolve=True)

    def write_test_results(self, results: dict, predictions: Iterable[Sequence] = ()) -> None:
        """``test_metrics.json`` and ``test_predictions.csv`` (rows of ``PREDICTION_COLUMNS``)."""
        write_json(self.metrics_file, results)
        predictions = list(predictions)
        if predictions:
            with open(self.predictions_file, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(PREDICTION_COLUMNS)
                writer.writerows(predictions)

    # -- readers -------------------------------------------------------------------------------
    @cached_property
    def results(self) -> dict:
        """``test_metrics.json`` ({} while the run is unfinished)."""
        return _read_json(self.metrics_file) or {}

    @property
    def model(self) -> str:
        return str(self.results.get("model", "")).strip().lower()

    @property
    def acc_video(self) -> float:
        """Test per-video accuracy in [0, 1] (the paper's Table 1 column)."""
        return _float(self.results.get("test/acc_video"))

    @property
    def acc_frame(self) -> float:
        return _float(self.results.get("test/acc_frame"))

    @property
    def per_stage_acc(self) -> dict[str, float]:
        return {k: _float(v) for k, v in (self.results.get("per_stage_acc") or {}).items()}

    @property
    def morphokinetics(self) -> dict:
        """p, p_v, p_t and onset errors with CIs (``morphokinetics.figures_of_merit``); {} if not computed."""
        return self.results.get("morphokinetics") or {}

    def predictions(self) -> pd.DataFrame | None:
        """``test_predictions.csv`` (None when absent); runs written before the timeline columns lack them."""
        if not self.predictions_file.is_file():
            return None
        return pd.read_csv(self.predictions_file)

    @property
    def class_counts(self) -> dict[str, dict[str, int]]:
        counts = self.results.get("class_counts") or {}
        return {split: {k: int(v) for k, v in c.items()} for split, c in counts.items()}

    @property
    def best_ckpt(self) -> Path | None:
        """The checkpoint the test used, as recorded (it may have been moved since)."""
        return Path(self.results["best_ckpt"]) if self.results.get("best_ckpt") else None

    def data_config(self, overrides: dict | DictConfig | None = None) -> dict:
        """The data config the model was trained with (same split, crop and resize), plus the
        non-null ``overrides``."""
        if not self.config_file.is_file():
            raise CheckpointError(f"{self.config_file} not found: the checkpoint's run dir must hold the resolved "
                                  "training config (written by `python -m embryo_xai.train`)")
        data = OmegaConf.to_container(OmegaConf.load(self.config_file).data, resolve=True)
        given = OmegaConf.to_container(overrides, resolve=True) if isinstance(overrides, DictConfig) else overrides
        data.update({k: v for k, v in (given or {}).items() if v is not None})
        return data

    def owns(self, checkpoint: Path) -> bool:
        """Whether ``checkpoint`` is this run's (inside its dir, or the one its test recorded)."""
        checkpoint = checkpoint.resolve()
        return checkpoint.is_relative_to(self.dir.resolve()) or (
            self.best_ckpt is not None and checkpoint == self.best_ckpt.resolve())

    # -- finding runs --------------------------------------------------------------------------
    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> TrainingRun:
        """The run a ``<run>/checkpoints/*.ckpt`` belongs to."""
        return cls(Path(checkpoint).resolve().parent.parent)

    @classmethod
    def given(cls, run_dir: str | Path) -> TrainingRun:
        """A run named by the user (``train_run=DIR``): it must exist and be finished."""
        run = cls(Path(run_dir))
        if not run.dir.is_dir():
            raise CheckpointError(f"train_run={run.dir}: no such directory")
        if not run.checkpoint.is_file():
            raise CheckpointError(f"train_run={run.dir} has no finished checkpoint (checkpoints/best.ckpt): did "
                                  "its training finish? Pass a finished run, or leave train_run out for the latest one")
        return run

    @classmethod
    def find(cls, roots: Iterable[str | Path]) -> list[TrainingRun]:
        """Every run with test results under ``roots`` (recursively), oldest first."""
        found = {cls(p.parent) for root in map(Path, roots) if root.exists()
                 for p in root.rglob(cls.metrics_file.relative)}
        return sorted(found, key=lambda run: (run.metrics_file.stat().st_mtime, str(run.dir)))

    @classmethod
    def latest(cls, log_dir: str | Path, model: str) -> TrainingRun:
        """The most recent finished run of ``model`` anywhere under ``log_dir`` (``outputs/``: single
        runs, sweeps and the study's ``main/train/<model>`` alike)."""
        candidates = [run for run in cls.find([log_dir]) if run.model == model and run.finished()]
        if not candidates:
            raise CheckpointError(f"no finished training run of model {model!r} under {log_dir}; train one with "
                                  f"`python -m embryo_xai.train model={model}` (CPU: add experiment=demo) or pass "
                                  "train_run=DIR / ckpt=FILE")
        return candidates[-1]


@dataclass(frozen=True)
class FaithfulnessRun:
    """One approach's results: ``faithfulness_rows.csv`` (one row per image x metric, appended as
    batches finish), ``maps/batch_*.npz`` merged into ``maps.npz`` (image ids, maps at their native
    resolution, the explained uint8 crops), ``settings.json`` (what the rows were computed under,
    the training run and its accuracy included) and ``summary.json`` (means, completeness)."""

    dir: Path
    rows_file = RunFile("faithfulness_rows.csv")
    summary_file = RunFile("summary.json")
    settings_file = RunFile("settings.json")
    maps_file = RunFile("maps.npz")
    #: map batches written while a run is going; merged into ``maps.npz`` when it ends
    maps_parts = RunFile("maps")

    @classmethod
    def find(cls, roots: Iterable[str | Path]) -> list[FaithfulnessRun]:
        """Every faithfulness run under ``roots`` (recursively), in path order."""
        found: set[Path] = set()
        for root in map(Path, roots):
            if root.exists():
                for file in (cls.rows_file, cls.summary_file, cls.settings_file):
                    found.update(p.parent for p in root.rglob(file.relative))
        return [cls(d) for d in sorted(found)]

    # -- the settings guard ----------------------------------------------------------------------
    def claim(self, settings: dict) -> None:
        """Record ``settings``, or refuse when the run already holds rows computed under other ones:
        one results file never mixes two settings (the entry point and the callback alike)."""
        settings = json.loads(json.dumps(settings))  # as it will read back (tuples -> lists ...)
        previous = self.settings()
        if previous:
            if previous != settings:
                changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
                raise UsageError(f"{self.dir} holds results computed with other settings (differ in: {changed}); "
                                 "give this variant its own run dir (faithfulness: run_name=<name>) or delete that "
                                 "one to start over")
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.settings_file, settings)

    def settings(self) -> dict:
        return _read_json(self.settings_file) or {}

    # -- rows --------------------------------------------------------------------------------------
    def finished_images(self, metric_names: Sequence[str]) -> set[int]:
        """Images whose every requested metric already has a row."""
        if not self.rows_file.is_file():
            return set()
        seen: dict[int, set[str]] = {}
        with open(self.rows_file, newline="") as handle:
            for row in csv.DictReader(handle):
                seen.setdefault(int(row["image_id"]), set()).add(row["metric"])
        return {image for image, metrics in seen.items() if set(metric_names) <= metrics}

    def append(self, rows: Sequence[Sequence]) -> None:
        """Append rows (``ROW_COLUMNS``) durably: a row on disk survives a crash right after."""
        new = not self.rows_file.is_file()
        with open(self.rows_file, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(ROW_COLUMNS)
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> pd.DataFrame | None:
        """The rows as written (None when there are none). Runs written before the rows held keys
        only carry an extra ``approach`` label column; it is dropped."""
        if not self.rows_file.is_file() or self.rows_file.stat().st_size == 0:
            return None
        rows = pd.read_csv(self.rows_file)
        return None if rows.empty else rows.drop(columns=["approach"], errors="ignore")

    # -- maps ---------------------------------------------------------------------------------------
    def save_maps_part(self, image_ids: Sequence[int], maps: np.ndarray, crops: np.ndarray) -> None:
        """One batch: float16 maps and the uint8 crops the model saw (so the report never opens data/)."""
        self.maps_parts.mkdir(parents=True, exist_ok=True)
        np.savez(self.maps_parts / f"batch_{image_ids[0]:07d}.npz", image_id=np.asarray(image_ids),
                 maps=maps.astype(np.float16), crops=crops.astype(np.uint8))

    def _map_files(self) -> list[Path]:
        return [self.maps_file] if self.maps_file.exists() else sorted(self.maps_parts.glob("batch_*.npz"))

    def consolidate_maps(self) -> None:
        """Merge the batch parts into ``maps.npz``, sorted by image id (atomic replace)."""
        parts = sorted(self.maps_parts.glob("batch_*.npz"))
        if not parts:
            return
        loaded = [np.load(p) for p in parts]
        arrays = {key: np.concatenate([part[key] for part in loaded])
                  for key in ("image_id", "maps", "crops") if all(key in part for part in loaded)}
        order = np.argsort(arrays["image_id"], kind="stable")
        tmp = self.dir / "maps.tmp.npz"
        np.savez_compressed(tmp, **{key: array[order] for key, array in arrays.items()})
        tmp.replace(self.maps_file)

    def maps(self) -> dict[int, np.ndarray]:
        """{image_id: float32 map at its native resolution}."""
        return self._load("maps", np.float32)

    def crops(self) -> dict[int, np.ndarray]:
        """{image_id: (H, W) uint8 crop as the model saw it}; {} for runs saved without crops."""
        return self._load("crops", np.uint8)

    def _load(self, key: str, dtype: type) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for path in self._map_files():
            with np.load(path) as data:
                if key in data:
                    out.update(zip(data["image_id"].tolist(), data[key].astype(dtype)))
        return out

    # -- summary -------------------------------------------------------------------------------------
    def write_summary(self, model: str, method: str, metric_names: Sequence[str],
                      image_ids: Sequence[int]) -> dict:
        """Means and undefined counts over the requested images (``summary.json``)."""
        wanted = set(image_ids)
        values: dict[str, list[float]] = {m: [] for m in metric_names}
        with open(self.rows_file, newline="") as handle:
            for row in csv.DictReader(handle):
                if int(row["image_id"]) in wanted and row["metric"] in values:
                    values[row["metric"]].append(float(row["value"]))
        means = {m: (float(np.nanmean(v)) if v and not all(math.isnan(x) for x in v) else float("nan"))
                 for m, v in values.items()}
        undefined = {m: int(sum(math.isnan(x) for x in v)) for m, v in values.items()}
        n_done = min((len(v) for v in values.values()), default=0)
        summary = {"model": model, "method": method, "n_images": n_done, "n_requested": len(wanted),
                   "means": means, "undefined": undefined, "complete": n_done == len(wanted)}
        write_json(self.summary_file, summary)
        return summary

    def summary(self) -> dict | None:
        return _read_json(self.summary_file)

    def complete(self) -> bool:
        return bool((self.summary() or {}).get("complete"))

    def training_run(self) -> TrainingRun | None:
        """The training run whose model this run explained, as its settings record it."""
        settings = self.settings()
        if settings.get("train_run"):
            return TrainingRun(Path(settings["train_run"]))
        if settings.get("ckpt"):  # runs from before train_run was recorded
            return TrainingRun.of_checkpoint(settings["ckpt"])
        return None


@dataclass(frozen=True)
class GroundTruthRun:
    """The ground-truth layer of a study on the synthetic set (``python -m embryo_xai.ground_truth``):
    ``counterfactuals.npz`` (each explained frame redrawn without each structure), ``importance.csv``
    (per model, image and structure: the drop of the explained class's score), ``rows.csv`` (per
    approach and image: ground-truth faithfulness and localisation), ``sanity.csv`` (model-parameter
    randomisation and random-logit similarities) and ``ground_truth.json`` (done, or why skipped; the runs
    scored; timings).
    The control pseudo-explainers' faithfulness runs live in ``controls/``."""

    dir: Path
    counterfactuals_file = RunFile("counterfactuals.npz")
    importance_file = RunFile("importance.csv")
    rows_file = RunFile("rows.csv")
    sanity_file = RunFile("sanity.csv")
    summary_file = RunFile("ground_truth.json")  # not summary.json: no faithfulness run
    controls_dir = RunFile("controls")

    def summary(self) -> dict | None:
        return _read_json(self.summary_file)

    def finished(self) -> bool:
        return self.summary() is not None

    def table(self, file: Path) -> pd.DataFrame | None:
        return pd.read_csv(file) if file.is_file() and file.stat().st_size else None

    @classmethod
    def find(cls, roots: Iterable[str | Path]) -> list[GroundTruthRun]:
        """Every ground-truth run under ``roots`` (recursively)."""
        found = {p.parent for root in map(Path, roots) if Path(root).exists()
                 for p in Path(root).rglob(cls.summary_file.relative)
                 if (p.parent / cls.rows_file.relative).exists() or "skipped" in (_read_json(p) or {})}
        return [cls(d) for d in sorted(found)]
