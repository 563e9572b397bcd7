"""Morphokinetics: each model's stage recognition read as a timeline (p, p_v, p_t, onset errors in hours).

The numbers come from the training runs' ``test_metrics.json`` (``morphokinetics``, computed by the
test step, ``embryo_xai/morphokinetics.py``); the timeline figure from their ``test_predictions.csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis import figures
from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.spec import model_label
from embryo_xai.analysis.writer import ReportWriter
from embryo_xai.data.stages import PHASES, STAGES
from embryo_xai.models import list_models
from embryo_xai.runs import TrainingRun

HEADLINE = (("p", "p (%)", 100.0), ("p_v", "p_v (%)", 100.0), ("p_t", "p_t (%)", 100.0),
            ("onset_error_h", "onset error (h)", 1.0))
TITLE = "Morphokinetics — stage recognition as a timeline"


def _newest_per_model(study: Study) -> dict[str, TrainingRun]:
    """The newest training run of each model that has morphokinetic results, in the registry's order."""
    newest = {t.model: t for t in study.trainings if t.morphokinetics}
    return {m: newest[m] for m in sorted(newest, key=lambda m: (list_models().index(m)
                                                                if m in list_models() else 99, m))}


def _cell(value: dict, scale: float) -> str:
    if value.get("mean") is None:
        return "–"
    return f"{scale * value['mean']:.1f} [{scale * value['low']:.1f}, {scale * value['high']:.1f}]"


def summary_table(runs: dict[str, TrainingRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(full-precision table for the CSV, formatted 'mean [low, high]' table for the report)."""
    rows, shown = [], []
    for model, run in runs.items():
        results = run.morphokinetics
        row = {"model": model_label(model), "videos": results.get("n_videos")}
        for key, _, _ in HEADLINE:
            row |= {f"{key}{suffix}": results[key][part] for suffix, part in
                    (("", "mean"), ("_low", "low"), ("_high", "high"))}
        rows.append(row)
        shown.append({"Model": model_label(model), "videos": results.get("n_videos")}
                     | {label: _cell(results[key], scale) for key, label, scale in HEADLINE})
    return pd.DataFrame(rows), pd.DataFrame(shown)


def onset_errors(runs: dict[str, TrainingRun]) -> pd.DataFrame:
    """Mean absolute onset error (h) per event (rows) and model (columns); NaN where never a transition."""
    return pd.DataFrame({model_label(m): {e: v.get("mean") for e, v in
                                          r.morphokinetics["onset_error_by_event_h"].items()}
                         for m, r in runs.items()}).reindex(list(PHASES)).astype(float).rename_axis("event")


def timeline_figure(predictions: dict[str, pd.DataFrame], videos: list[str], stem) -> object:
    """One row per video, one column per model: annotated, raw and decoded stage along hours."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(videos), len(predictions), squeeze=False, sharey=True,
                             figsize=(3.6 * len(predictions) + 1.5, 2.6 * len(videos)))
    for col, (model, frame) in enumerate(predictions.items()):
        for row, video in enumerate(videos):
            ax = axes[row, col]
            rows = frame[frame["video"] == video].sort_values("run")
            x = rows["hours"].to_numpy(float) if rows["hours"].notna().all() else rows["run"].to_numpy(float)
            ax.step(x, rows["label"], where="post", color="black", lw=2.2, label="annotated")
            ax.plot(x, rows["prediction"], ".", color="tab:orange", ms=3, alpha=0.8, zorder=3, label="raw argmax")
            if (rows["decoded"] >= 0).any():
                ax.step(x, rows["decoded"], where="post", color="tab:blue", lw=1.3, label="decoded")
            if row == 0:
                ax.set_title(model)
            if row == len(videos) - 1:
                ax.set_xlabel("hours" if rows["hours"].notna().all() else "RUN")
            if col == 0:
                ax.set_ylabel(video[-12:], fontsize=8)
            ax.set_yticks(range(0, len(STAGES), 3), [STAGES[i] for i in range(0, len(STAGES), 3)], fontsize=8)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return figures.save(fig, stem)


def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    runs = _newest_per_model(study)
    if not runs:
        return [Section(TITLE, ["No training run has morphokinetic results (`test_metrics.json` → "
                                "`morphokinetics`; `python -m embryo_xai.train` writes them): section skipped."])]
    full, shown = summary_table(runs)
    writer.add_table("morphokinetics", full)
    first = next(iter(runs.values())).morphokinetics
    tolerances = ", ".join(f"{e} {h:g} h" for e, h in (first.get("tolerances_h") or {}).items())
    section = Section(TITLE, [
        "The data set paper's figures of merit (Gomez et al. 2022), per test video then averaged, with 95% "
        "bootstrap intervals over videos: **p** frame accuracy of the raw argmax; **p_v** frame accuracy after "
        "Viterbi decoding into a monotone stage sequence (stages stay or move forward, skips allowed); **p_t** "
        "share of annotated phase transitions the decoded sequence enters within the event's tolerance (one "
        "standard deviation of its timing, the paper's values); **onset error** mean absolute error of the "
        f"decoded onsets (hours). Tolerances: {tolerances}.",
        Table(shown),
        "Files: `morphokinetics.csv` (means and bounds), `morphokinetics_onset_errors.csv` (per event).",
    ])
    errors = onset_errors(runs)
    writer.add_table("morphokinetics_onset_errors", errors, index="event")
    if errors.notna().any().any():
        section.blocks.append(writer.add_figure(
            figures.grouped_bars(errors.fillna(0.0), writer.stem("morphokinetics_onset_errors"),
                                 "Onset error per event", "mean |error| (h)"),
            "Mean absolute onset error per event (decoded sequence), per model; 0 where no test video has "
            "that transition."))
    predictions = {model_label(m): p for m, r in runs.items()
                   if (p := r.predictions()) is not None and {"hours", "decoded"} <= set(p.columns)}
    if predictions:
        common = sorted(set.intersection(*(set(p["video"]) for p in predictions.values())))
        n_videos = int((cfg.get("morphokinetics") or {}).get("timeline_videos", 3))
        chosen = [common[i] for i in np.linspace(0, len(common) - 1, min(n_videos, len(common))).astype(int)]
        if chosen:
            png = timeline_figure(predictions, list(dict.fromkeys(chosen)), writer.stem("morphokinetics_timeline"))
            section.blocks.append(writer.add_figure(
                png, "Annotated (black), raw argmax (orange dots) and decoded (blue) stage along time for a few "
                     "test videos, one column per model."))
    return [section]
