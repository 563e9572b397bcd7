"""Find finished runs on disk and gather them into one `Study` the rest of the analysis reads.

Faithfulness runs (one approach each) give per-image rows; training runs give accuracy
and class counts. A published table (CSV in Table 1's layout) can stand in for runs.
Anything missing or partial is recorded in `Study.incomplete` instead of failing, so
the report still renders what is there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embryo_xai.analysis.spec import METRICS, Approach, method_key, model_key
from embryo_xai.errors import UsageError
from embryo_xai.metrics import list_metrics
from embryo_xai.runs import IMAGE_COLUMNS, FaithfulnessRun, TrainingRun

PRODUCER_COMMAND = "python -m embryo_xai.faithfulness model=<model> method=<method> [train_run=DIR | ckpt=FILE]"


class NoResultsError(FileNotFoundError):
    """No faithfulness results were found where the report looked."""


class ImageMismatchError(UsageError):
    """Approaches' runs give one image id different frames: they cannot be paired image by image."""


@dataclass
class Study:
    """Everything the tables and figures need, with approaches in the paper's order.

    `values[a, m, i]` is metric `metrics[m]` of approach `a` on image `image_ids[i]`
    (NaN where undefined or absent); it is None when only published means are known. `metrics`
    are the paper's seven and any other registered metric the runs scored, in registry order.
    """

    approaches: list[Approach]
    means: pd.DataFrame
    accuracy: pd.Series
    values: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    images: pd.DataFrame | None = None
    incomplete: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["approach", "metric", "problem"]))
    trainings: list[TrainingRun] = field(default_factory=list)
    run_dirs: dict[Approach, list[Path]] = field(default_factory=dict)
    metrics: tuple[str, ...] = METRICS

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.approaches]


def find_runs(roots: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Faithfulness run dirs and training run dirs found recursively under `roots`."""
    return [run.dir for run in FaithfulnessRun.find(roots)], sorted(run.dir for run in TrainingRun.find(roots))


def load_training_runs(run_dirs: list[Path]) -> list[TrainingRun]:
    """Training runs with test results, oldest first (so later entries are the newest)."""
    runs = [TrainingRun(d) for d in run_dirs if TrainingRun(d).metrics_file.is_file()]
    return sorted(runs, key=lambda run: run.metrics_file.stat().st_mtime)


def _training_for(approach: Approach, run_dirs: list[Path], trainings: list[TrainingRun]) -> TrainingRun | None:
    """The training run the approach explained (as its settings record it), else the newest run of
    that model."""
    candidates = [t for t in trainings if t.model == approach.model]
    for recorded in (FaithfulnessRun(d).training_run() for d in run_dirs):
        for run in candidates if recorded is not None else []:
            if run.dir.resolve() == recorded.dir.resolve() or run.owns(recorded.checkpoint):
                return run
    return candidates[-1] if candidates else None


def _read_rows(run: FaithfulnessRun) -> pd.DataFrame | None:
    rows = run.rows()
    if rows is not None:
        rows["_order"] = run.rows_file.stat().st_mtime
    return rows


def _approach_of(run: FaithfulnessRun, rows: pd.DataFrame | None, summary: dict | None) -> Approach | None:
    """Model and method of a run from its rows, summary or settings; None if it is not a faithfulness run."""
    if rows is not None:
        return Approach(rows["model"].iloc[0], rows["method"].iloc[0])
    for record in (summary or {}, run.settings()):
        if record.get("model") and record.get("method"):
            return Approach(model_key(record["model"]), method_key(record["method"]))
    return None


def load_study(faithfulness_dirs: list[Path], training_dirs: list[Path], controls: bool = False) -> Study:
    """Gather faithfulness runs (per-image rows) and training runs into a `Study`.

    Runs of control pseudo-explainers (``Approach.is_control``) are left out unless ``controls``: they are
    yardsticks of the ground-truth section, not approaches of Table 1.

    Raises NoResultsError, naming the command that produces results, when no
    faithfulness run holds any usable result.
    """
    problems: list[tuple[str, str, str]] = []
    frames: list[pd.DataFrame] = []
    summaries: dict[Approach, list[dict]] = {}
    run_dirs: dict[Approach, list[Path]] = {}
    for run_dir in faithfulness_dirs:
        run = FaithfulnessRun(run_dir)
        rows, summary = _read_rows(run), run.summary()
        approach = _approach_of(run, rows, summary)
        if approach is None or (approach.is_control and not controls):  # not a run of this study's approaches
            continue
        run_dirs.setdefault(approach, []).append(run_dir)
        if summary is not None:
            summaries.setdefault(approach, []).append(summary)
        if rows is not None:
            frames.append(rows)
    if not frames and not any(s.get("means") for group in summaries.values() for s in group):
        where = ", ".join(map(str, faithfulness_dirs)) or "the searched folders"
        raise NoResultsError(
            f"No faithfulness results found in {where}. Produce them first with:\n  {PRODUCER_COMMAND}\n"
            "(one run per approach; then run `python -m embryo_xai.report runs=[<dirs>]`), "
            "or analyse a published table with `python -m embryo_xai.report table1_csv=<file>`."
        )
    approaches = sorted(run_dirs, key=lambda a: a.sort_key)
    rows = _deduplicated(pd.concat(frames, ignore_index=True)) if frames else None
    if rows is not None:
        check_same_images(rows)
    scored_metrics = set(rows["metric"]) if rows is not None else set()
    scored_metrics |= {m for group in summaries.values() for s in group for m in (s.get("means") or {})}
    metrics = tuple(m for m in list_metrics() if m in METRICS or m in scored_metrics)
    values, scored, image_ids, images = (_value_cube(rows, approaches, metrics) if rows is not None
                                         else (None, None, None, None))
    means = pd.DataFrame(np.nan, index=[a.label for a in approaches], columns=list(metrics))
    if values is not None:
        means.loc[:, :] = nanmean(values, axis=2)
    for a in approaches:
        for summary in summaries.get(a, []):
            for metric, mean in (summary.get("means") or {}).items():
                if metric in means.columns and np.isnan(means.at[a.label, metric]):
                    means.at[a.label, metric] = float(mean)
    problems += _completeness_problems(approaches, metrics, values, scored, summaries)
    trainings = load_training_runs(training_dirs)
    accuracy = pd.Series(np.nan, index=means.index, name="accuracy")
    for a in approaches:
        training = _training_for(a, run_dirs[a], trainings)
        if training is not None:
            accuracy[a.label] = 100.0 * training.acc_video
    return Study(
        approaches=approaches,
        means=means,
        accuracy=accuracy,
        values=values,
        image_ids=image_ids,
        images=images,
        incomplete=pd.DataFrame(problems, columns=["approach", "metric", "problem"]),
        trainings=trainings,
        run_dirs=run_dirs,
        metrics=metrics,
    )


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; an all-NaN slice is an expected NaN (undefined metric), not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _deduplicated(rows: pd.DataFrame) -> pd.DataFrame:
    """One value per (approach, image, metric): a resumed or repeated run keeps its newest row."""
    rows = rows.sort_values("_order", kind="stable")
    return rows.drop_duplicates(["model", "method", "image_id", "metric"], keep="last").drop(columns="_order")


def check_same_images(rows: pd.DataFrame, shown: int = 2) -> None:
    """Raise ImageMismatchError unless every approach's rows give each image id the same (video, RUN).

    The per-image analyses (bootstrap, t-SNE/UMAP, map agreement, gallery) pair approaches by
    image id; runs over another data root, split or sample would pair different frames silently.
    Rows without video/RUN columns cannot be checked and are trusted.
    """
    if not {"video", "run"} <= set(rows.columns):
        return
    run = pd.to_numeric(rows["run"], errors="coerce")
    approaches = [Approach(m, t) for m, t in zip(rows["model"], rows["method"])]
    frames = (
        pd.DataFrame(
            {
                "approach": [a.label for a in approaches],
                "position": [a.sort_key for a in approaches],  # name approaches in the report's order
                "image_id": rows["image_id"].to_numpy(),
                "frame": rows["video"].astype(str) + " RUN " + run.map("{:g}".format),
            }
        )
        .drop_duplicates(["approach", "image_id", "frame"])
        .sort_values(["position", "image_id"], kind="stable")
    )
    per_image = frames.groupby("image_id")["frame"].nunique()
    conflicts = per_image.index[per_image > 1]
    if conflicts.empty:
        return
    clashing = frames[frames["image_id"].isin(conflicts)]
    examples = []
    for image_id in conflicts[:shown]:
        variants = clashing[clashing["image_id"] == image_id].groupby("frame", sort=False)["approach"]
        examples.append(
            f"image_id {image_id} is "
            + " but ".join(f"{frame} for {', '.join(labels)}" for frame, labels in variants.agg(list).items())
        )
    involved = ", ".join(dict.fromkeys(clashing["approach"]))
    raise ImageMismatchError(
        f"cannot pair the approaches image by image: {len(conflicts)} of {len(per_image)} image ids name different "
        f"frames in different runs (approaches involved: {involved}); e.g. {'; '.join(examples)}. Score every "
        "approach on the same test images (same data root, split, n_images and sample_seed), or report such runs "
        "separately (runs=[<dirs>])."
    )


def _value_cube(
    rows: pd.DataFrame, approaches: list[Approach], metrics: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Pivot long rows into values (approach, metric, image) over the union of images.

    Also returns which cells have a row at all: a row with NaN is an undefined value
    (e.g. DC of a constant map), a cell without a row was never scored.
    """
    image_ids = np.sort(rows["image_id"].unique())
    approach_index = {(a.model, a.method): i for i, a in enumerate(approaches)}
    rows = rows[rows["metric"].isin(metrics)]
    index = (
        np.array([approach_index[k] for k in zip(rows["model"], rows["method"])], dtype=int),
        rows["metric"].map({m: i for i, m in enumerate(metrics)}).to_numpy(dtype=int),
        np.searchsorted(image_ids, rows["image_id"].to_numpy()),
    )
    shape = (len(approaches), len(metrics), len(image_ids))
    values = np.full(shape, np.nan)
    values[index] = rows["value"].to_numpy(dtype=float)
    scored = np.zeros(shape, dtype=bool)
    scored[index] = True
    present = [c for c in IMAGE_COLUMNS if c in rows.columns]
    images = rows[present].drop_duplicates("image_id").set_index("image_id").loc[image_ids].reset_index()
    return values, scored, image_ids, images


def _completeness_problems(
    approaches: list[Approach],
    metrics: tuple[str, ...],
    values: np.ndarray | None,
    scored: np.ndarray | None,
    summaries: dict[Approach, list[dict]],
) -> list[tuple[str, str, str]]:
    """Which approaches/metrics lack rows, cover fewer images than the others, or are undefined."""
    problems: list[tuple[str, str, str]] = []
    if values is not None and scored is not None:
        n_images = values.shape[2]
        n_scored = scored.sum(axis=2)
        n_undefined = (scored & np.isnan(values)).sum(axis=2)
        for (a_i, m_i), count in np.ndenumerate(n_scored):
            label, metric = approaches[a_i].label, metrics[m_i].upper()
            if count == 0:
                problems.append((label, metric, "missing: no rows"))
            elif count < n_images:
                problems.append((label, metric, f"partial: {count}/{n_images} images scored"))
            if n_undefined[a_i, m_i]:
                problems.append((label, metric, f"undefined (NaN) on {n_undefined[a_i, m_i]} image(s), left out"))
    for a_i, a in enumerate(approaches):
        group = summaries.get(a, [])
        if not group:
            problems.append((a.label, "all", "no summary.json (run interrupted?)"))
        elif not any(s.get("complete", False) for s in group):
            problems.append((a.label, "all", "run not complete (summary.json complete=false)"))
        if scored is None or not scored[a_i].any():
            source = "means from summary.json only" if group else "nothing to report yet"
            problems.append((a.label, "all", f"no per-image rows: {source}"))
    return problems
