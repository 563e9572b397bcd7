"""Find finished runs on disk and gather them into one `Study` the rest of the analysis reads.

Faithfulness runs (one approach each) give per-image rows; training runs give accuracy
and class counts. A published table (CSV in Table 1's layout) can stand in for runs.
Anything missing or partial is recorded in `Study.incomplete` instead of failing, so
the report still renders what is there.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from embryo_xai.analysis.spec import METRICS, MODEL_LABELS, Approach, method_key, metric_key, model_key
from embryo_xai.errors import UsageError, one_line

ROWS_FILE = "faithfulness_rows.csv"
SUMMARY_FILE = "summary.json"
MAPS_FILE = "maps.npz"
MAPS_PARTS = "maps"  # maps/batch_*.npz: written while a run is going, merged into maps.npz at its end
SETTINGS_FILE = "settings.json"  # the run's resolved settings: model, method, ckpt, data config
TRAIN_FILE = "test_metrics.json"
PRODUCER_COMMAND = "python -m embryo_xai.faithfulness model=<model> method=<method> [train_run=DIR | ckpt=FILE]"
IMAGE_COLUMNS = ("image_id", "video", "run", "label", "stage")


class NoResultsError(FileNotFoundError):
    """No faithfulness results were found where the report looked."""


class ImageMismatchError(UsageError):
    """Approaches' runs give one image id different frames: they cannot be paired image by image."""


@dataclass
class TrainingRun:
    """The test metrics of one training run (accuracy in [0, 1] as written by the test loop)."""

    run_dir: Path
    model: str
    acc_video: float
    acc_frame: float
    per_stage_acc: dict[str, float]
    class_counts: dict[str, dict[str, int]]
    best_ckpt: Path | None = None


@dataclass
class Study:
    """Everything the tables and figures need, with approaches in the paper's order.

    `values[a, m, i]` is metric `METRICS[m]` of approach `a` on image `image_ids[i]`
    (NaN where undefined or absent); it is None when only published means are known.
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

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.approaches]


def find_runs(roots: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Faithfulness run dirs and training run dirs found recursively under `roots`."""
    faithfulness: set[Path] = set()
    training: set[Path] = set()
    for root in map(Path, roots):
        if not root.exists():
            continue
        for name in (ROWS_FILE, SUMMARY_FILE, SETTINGS_FILE):
            faithfulness.update(p.parent for p in root.rglob(name))
        training.update(p.parent for p in root.rglob(TRAIN_FILE))
    return sorted(faithfulness), sorted(training)


def _float(value: object) -> float:
    """A JSON number, with null (metric not computed) read as NaN."""
    return math.nan if value is None else float(value)


def load_training_runs(run_dirs: list[Path]) -> list[TrainingRun]:
    """Test metrics of every training run, oldest first (so later entries are the newest)."""
    runs = []
    for run_dir in run_dirs:
        data = json.loads((run_dir / TRAIN_FILE).read_text())
        runs.append(
            TrainingRun(
                run_dir=run_dir,
                model=model_key(data.get("model", "")),
                acc_video=_float(data.get("test/acc_video")),
                acc_frame=_float(data.get("test/acc_frame")),
                per_stage_acc={k: _float(v) for k, v in (data.get("per_stage_acc") or {}).items()},
                class_counts={
                    s: {k: int(v) for k, v in c.items()} for s, c in (data.get("class_counts") or {}).items()
                },
                best_ckpt=Path(data["best_ckpt"]) if data.get("best_ckpt") else None,
            )
        )
    return sorted(runs, key=lambda run: (run.run_dir / TRAIN_FILE).stat().st_mtime)


def read_settings(run_dir: Path) -> dict:
    """A faithfulness run's `settings.json` (resolved ckpt and data config), or {}."""
    path = run_dir / SETTINGS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def run_data_config(run_dir: Path) -> dict:
    """The data config a faithfulness run used: settings.json's resolved one, else what of the
    Hydra config's `data` resolves outside Hydra (e.g. not `${hydra:runtime.cwd}`)."""
    data = dict(read_settings(run_dir).get("data") or {})
    config_file = run_dir / ".hydra" / "config.yaml"
    if config_file.exists():
        node = OmegaConf.load(config_file).get("data") or {}
        for key in node:
            if data.get(key) is None:
                try:
                    data[key] = OmegaConf.select(node, str(key), throw_on_resolution_failure=True)
                except Exception:  # an interpolation only Hydra can resolve: leave it unknown
                    continue
    return data


def _checkpoint_paths(run_dir: Path) -> list[Path]:
    """The checkpoint a faithfulness run explained: settings.json's, and any `.ckpt` in its Hydra config."""
    found = [Path(read_settings(run_dir)["ckpt"])] if read_settings(run_dir).get("ckpt") else []
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():
        return found
    try:
        container = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    except Exception:  # a broken config only costs the accuracy link
        return found

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.endswith(".ckpt"):
            found.append(Path(node))

    walk(container)
    return found


def _training_for(approach: Approach, run_dirs: list[Path], trainings: list[TrainingRun]) -> TrainingRun | None:
    """The training run whose checkpoint the approach explained, else the newest run of that model."""
    candidates = [t for t in trainings if t.model == approach.model]
    for ckpt in (c.resolve() for d in run_dirs for c in _checkpoint_paths(d)):
        for run in candidates:
            if ckpt.is_relative_to(run.run_dir.resolve()) or (run.best_ckpt and ckpt == run.best_ckpt.resolve()):
                return run
    return candidates[-1] if candidates else None


def _read_rows(run_dir: Path) -> pd.DataFrame | None:
    rows_file = run_dir / ROWS_FILE
    if not rows_file.exists() or rows_file.stat().st_size == 0:
        return None
    rows = pd.read_csv(rows_file)
    if rows.empty:
        return None
    rows["model"] = rows["model"].map(model_key)
    rows["method"] = rows["method"].map(method_key)
    rows["metric"] = rows["metric"].map(metric_key)
    rows["_order"] = rows_file.stat().st_mtime
    return rows


def _read_summary(run_dir: Path) -> dict | None:
    summary_file = run_dir / SUMMARY_FILE
    return json.loads(summary_file.read_text()) if summary_file.exists() else None


def _approach_of(run_dir: Path, rows: pd.DataFrame | None, summary: dict | None) -> Approach | None:
    """Model and method of a run from its rows, summary or settings; None if it is not a faithfulness run."""
    if rows is not None:
        return Approach(rows["model"].iloc[0], rows["method"].iloc[0])
    for record in (summary or {}, read_settings(run_dir)):
        if record.get("model") and record.get("method"):
            return Approach(model_key(record["model"]), method_key(record["method"]))
    return None


def load_study(faithfulness_dirs: list[Path], training_dirs: list[Path]) -> Study:
    """Gather faithfulness runs (per-image rows) and training runs into a `Study`.

    Raises NoResultsError, naming the command that produces results, when no
    faithfulness run holds any usable result.
    """
    problems: list[tuple[str, str, str]] = []
    frames: list[pd.DataFrame] = []
    summaries: dict[Approach, list[dict]] = {}
    run_dirs: dict[Approach, list[Path]] = {}
    for run_dir in faithfulness_dirs:
        rows, summary = _read_rows(run_dir), _read_summary(run_dir)
        approach = _approach_of(run_dir, rows, summary)
        if approach is None:  # a summary.json of something else
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
    values, scored, image_ids, images = _value_cube(rows, approaches) if rows is not None else (None, None, None, None)
    means = pd.DataFrame(np.nan, index=[a.label for a in approaches], columns=list(METRICS))
    if values is not None:
        means.loc[:, :] = nanmean(values, axis=2)
    for a in approaches:
        for summary in summaries.get(a, []):
            for metric, mean in (summary.get("means") or {}).items():
                if metric_key(metric) in means.columns and np.isnan(means.at[a.label, metric_key(metric)]):
                    means.at[a.label, metric_key(metric)] = float(mean)
    problems += _completeness_problems(approaches, values, scored, summaries)
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
    rows: pd.DataFrame, approaches: list[Approach]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Pivot long rows into values (approach, metric, image) over the union of images.

    Also returns which cells have a row at all: a row with NaN is an undefined value
    (e.g. DC of a constant map), a cell without a row was never scored.
    """
    image_ids = np.sort(rows["image_id"].unique())
    approach_index = {(a.model, a.method): i for i, a in enumerate(approaches)}
    rows = rows[rows["metric"].isin(METRICS)]
    index = (
        np.array([approach_index[k] for k in zip(rows["model"], rows["method"])], dtype=int),
        rows["metric"].map({m: i for i, m in enumerate(METRICS)}).to_numpy(dtype=int),
        np.searchsorted(image_ids, rows["image_id"].to_numpy()),
    )
    shape = (len(approaches), len(METRICS), len(image_ids))
    values = np.full(shape, np.nan)
    values[index] = rows["value"].to_numpy(dtype=float)
    scored = np.zeros(shape, dtype=bool)
    scored[index] = True
    present = [c for c in IMAGE_COLUMNS if c in rows.columns]
    images = rows[present].drop_duplicates("image_id").set_index("image_id").loc[image_ids].reset_index()
    return values, scored, image_ids, images


def _completeness_problems(
    approaches: list[Approach],
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
            label, metric = approaches[a_i].label, METRICS[m_i].upper()
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


def _normalised(column: str) -> str:
    """Header spelling that does not matter: case, spaces, underscores, a trailing unit like "(%)"."""
    return "".join(ch for ch in column.split("(")[0].lower() if ch.isalnum())


_ACCURACY_COLUMNS = ("accuracy", "acc", "accuracyvideo", "pervideoaccuracy")


def _split_approach(value: str) -> tuple[str, str]:
    """An ``approach`` cell: ``Model/Method`` (``CNN/Grad-CAM++``), or a name alone as Table 1 prints
    it (a model name means its attention map, a method name the CNN's post-hoc map)."""
    text = str(value).strip()
    if "/" in text:
        model, method = text.split("/", 1)
        return model_key(model), method_key(method)
    if model_key(text) in MODEL_LABELS:
        return model_key(text), method_key("-")
    return "cnn", method_key(text)


def load_published_table(csv_path: str | Path) -> Study:
    """A table of approach means in Table 1's layout (model, method, metric columns, accuracy).

    Either ``model`` and ``method`` columns or one ``approach`` column (``Model/Method``); metric
    headers in any case (``DAUC`` or ``dauc``). Accuracy is in percent as printed; an empty
    accuracy cell inherits the model's value from another row (the paper prints the CNN's accuracy
    once for its five methods). A table without the expected columns raises a UsageError naming the
    columns found and those expected.
    """
    expected = ("model, method (or one approach column written Model/Method), " + ", ".join(m.upper() for m in METRICS)
                + " and optionally accuracy")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"table1_csv={csv_path}: cannot read it as a CSV ({one_line(error)}); expected columns: "
                         f"{expected}") from None
    columns = {_normalised(c): c for c in table.columns}
    found = ", ".join(str(c) for c in table.columns) or "none"
    metric_columns = {m: columns[m] for m in METRICS if m in columns}
    if "model" in columns and "method" in columns:
        keys = [(model_key(m), method_key(t)) for m, t in zip(table[columns["model"]], table[columns["method"]])]
    elif "approach" in columns:
        keys = [_split_approach(a) for a in table[columns["approach"]]]
    else:
        keys = None
    if keys is None or not metric_columns:
        raise UsageError(f"table1_csv={csv_path} lacks the expected columns: found {found}; expected {expected}")
    approaches = [Approach(model, method) for model, method in keys]
    means = pd.DataFrame(
        {m: pd.to_numeric(table[c], errors="coerce").to_numpy() for m, c in metric_columns.items()},
        index=[a.label for a in approaches],
    ).reindex(columns=list(METRICS))
    accuracy = pd.Series(np.nan, index=means.index, name="accuracy")
    accuracy_column = next((columns[c] for c in _ACCURACY_COLUMNS if c in columns), None)
    if accuracy_column is not None:
        raw = pd.to_numeric(table[accuracy_column], errors="coerce")
        per_model = pd.Series(raw.to_numpy(), index=[a.model for a in approaches]).dropna()
        per_model = per_model[~per_model.index.duplicated()]
        accuracy[:] = [per_model.get(a.model, np.nan) for a in approaches]
    # The table's own row order is kept: it is the "order of appearance" that breaks rank ties.
    labels = [a.label for a in approaches]
    missing = [
        (label, m.upper(), "missing in table") for label in labels for m in METRICS if np.isnan(means.at[label, m])
    ]
    return Study(
        approaches=approaches,
        means=means,
        accuracy=accuracy,
        incomplete=pd.DataFrame(missing, columns=["approach", "metric", "problem"]),
    )
