"""Ground truth on the synthetic set: each approach's ground-truth faithfulness and localisation, the sanity
checks, and the meta-evaluation "which metric agrees with the ground truth" (``analysis/meta_evaluation``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study, load_study, nanmean
from embryo_xai.analysis.meta_evaluation import (
    REFERENCE,
    bootstrap_interval,
    meta_evaluate,
    meta_evaluation_figure,
    randomisation_figure,
)
from embryo_xai.analysis.sections import listed, per_image
from embryo_xai.analysis.spec import Approach, metric_group, metric_label, signed_for_higher_better
from embryo_xai.analysis.writer import ReportWriter
from embryo_xai.metrics.localisation import LOCALISATION_METRICS
from embryo_xai.runs import FaithfulnessRun, GroundTruthRun
from embryo_xai.sanity import INSENSITIVE_THRESHOLD

TITLE = "Ground truth: which explanation and which metric to trust (synthetic set)"


def cube(rows: pd.DataFrame, approaches: list[Approach], image_ids: np.ndarray, columns: list[str]) -> np.ndarray:
    """(A, K, N) of the ground-truth rows' ``columns`` in the study's approach and image order (NaN if absent)."""
    indexed = rows.set_index(["model", "method", "image_id"])
    keys = pd.MultiIndex.from_tuples([(a.model, a.method, int(i)) for a in approaches for i in image_ids])
    values = indexed.reindex(keys)[columns].to_numpy(float)  # (A*N, K)
    return values.reshape(len(approaches), len(image_ids), len(columns)).transpose(0, 2, 1)


def approach_table(study: Study, gt: np.ndarray, columns: list[str], n_boot: int, seed: int,
                   level: float) -> pd.DataFrame:
    """Per approach: ground-truth Spearman with its bootstrap CI, top-1 rate and the localisation means."""
    mean, low, high = bootstrap_interval(gt[:, 0], n_boot, seed, level)
    table = pd.DataFrame({"approach": study.labels, "control": [a.is_control for a in study.approaches],
                          "GT Spearman": mean, "CI": [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(low, high)]})
    for k, column in enumerate(columns[1:], start=1):
        table[_label(column)] = nanmean(gt[:, k], axis=1)
    return table


def _label(column: str) -> str:
    if column in LOCALISATION_METRICS:
        return LOCALISATION_METRICS[column][1]
    return {"gt_spearman": "GT Spearman", "gt_top1": "GT top-1"}.get(column, column)


def sanity_table(sanity: pd.DataFrame, study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per approach: median similarity after the full cascade and to a random class, flagged;
    median similarity per cascade step and approach, for the figure)."""
    label = {(a.model, a.method): a.label for a in study.approaches}
    sanity = sanity[[(m, k) in label for m, k in zip(sanity["model"], sanity["method"])]].copy()
    sanity["approach"] = [label[(m, k)] for m, k in zip(sanity["model"], sanity["method"])]
    cascade = sanity[sanity["test"] == "randomisation"]
    curves = cascade.groupby(["approach", "step"], sort=False)["spearman"].median().reset_index()
    last = cascade[cascade["step"] == cascade.groupby("approach")["step"].transform("max")]
    full = last.groupby("approach", sort=False)["spearman"].median()
    logit = sanity[sanity["test"] == "random_logit"].groupby("approach", sort=False)["spearman"].median()
    order = [a for a in study.labels if a in full.index]
    table = pd.DataFrame({"approach": order, "randomised model": full.reindex(order).to_numpy(),
                          "random class": logit.reindex(order).to_numpy()})
    table["flag"] = np.where(table["randomised model"] > INSENSITIVE_THRESHOLD, "barely changes", "")
    return table, curves


def _metric_family(name: str) -> str:
    return "localisation" if name in LOCALISATION_METRICS else (metric_group(name) or "other")


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    roots = list(cfg.get("runs") or [cfg.paths.log_dir])
    found = GroundTruthRun.find(roots)
    if not found:
        return []
    run = found[-1]
    summary = run.summary() or {}
    if "skipped" in summary:
        return [Section(TITLE, [f"Skipped: {summary['skipped']}."])]
    rows, sanity = run.table(run.rows_file), run.table(run.sanity_file)
    if rows is None:
        return [Section(TITLE, [f"`{run.rows_file}` is empty: rerun `python -m embryo_xai.ground_truth`."])]
    scored = [Path(d) for d in summary.get("runs", [])] or [r.dir for r in FaithfulnessRun.find([run.controls_dir])]
    full = load_study(sorted({*scored, *(d for dirs in study.run_dirs.values() for d in dirs)}), [], controls=True)
    n_boot, seed, level = int(cfg.get("bootstrap", 0) or 0), int(cfg.get("seed", 0)), float(cfg.get("ci", 0.95))
    localisation = [m for m in LOCALISATION_METRICS if m in rows.columns]
    columns = [REFERENCE, "gt_top1", *localisation]
    gt = cube(rows, full.approaches, full.image_ids, columns)  # (A, K, N)
    by_approach = writer.add_table("ground_truth", approach_table(full, gt, columns, n_boot, seed, level))

    # Meta-evaluation: every metric and localisation measure against the ground-truth ranking.
    names = [*full.metrics, *localisation]
    signs = np.array([signed_for_higher_better(m) for m in full.metrics] +
                     [1.0 if LOCALISATION_METRICS[m][2] else -1.0 for m in localisation])
    signed = np.concatenate([full.values, gt[:, 2:]], axis=1) * signs[None, :, None]
    is_control = np.array([a.is_control for a in full.approaches])
    labels = [metric_label(m) if m in full.metrics else LOCALISATION_METRICS[m][1] for m in names]
    result = meta_evaluate(signed, gt[:, 0], labels, [_metric_family(m) for m in names], is_control,
                           n_boot, seed, level)
    meta = writer.add_table("meta_evaluation", result.table)
    families = result.table.groupby("family")["tau"].mean()
    family_sentence = ", ".join(f"{family} {tau:.2f}" for family, tau in families.items())
    best = result.table.iloc[0]
    failing = list(result.table.loc[~result.table["controls_last"], "metric"])
    blocks: list = [
        "The synthetic generator redraws each explained frame once per structure with that structure removed "
        "and nothing else changed (same camera, exposure, noise and focus): an in-distribution removal. The "
        "**true importance** of a structure is the drop of the explained class's score when it is removed; an "
        "approach's **ground-truth faithfulness** on an image is Spearman's correlation between its map's mean "
        "saliency per structure and those importances (top-1: the most salient structure is the most "
        f"important). {summary.get('n_images', '?')} images, {summary.get('n_structures', '?')} structures in "
        "the crops. The controls (a seeded random map, a centred Gaussian and the image's Sobel edges) are "
        "yardsticks that explain nothing about the model. Localisation (plausibility, not faithfulness) "
        "compares the map with the stage-defining structures' mask, as Quantus defines it.",
        Table(by_approach.drop(columns=["control"]), decimals=2),
        "**Which metric agrees with the ground truth?** Per image, Kendall's tau between the ranking of the "
        f"{len(full.approaches)} approaches (controls included) by each metric and by ground-truth faithfulness; "
        f"mean over images with its {int(level * 100)}% bootstrap interval. `controls last`: the metric's means "
        "put every control below every real explainer.",
        Table(meta.rename(columns={"ci_low": "low", "ci_high": "high", "controls_last": "controls last"}),
              decimals=2),
        f"Best agreement: {best['metric']} (tau {best['tau']:.2f}). Mean tau by family: {family_sentence}. "
        + (f"Metrics that do not rank every control last: {listed(failing)}." if failing
           else "Every metric ranks every control last."),
        writer.add_figure(meta_evaluation_figure(result, writer.stem("meta_evaluation")),
                          "Kendall tau of each metric's ranking of the approaches with the ground-truth ranking "
                          "(bars: mean over images; whiskers: bootstrap interval; colour: family; cross: the "
                          "metric does not put every control below every real explainer)."),
    ]
    if sanity is not None and not sanity.empty:
        table, curves = sanity_table(sanity, full)
        flagged = list(table.loc[table["flag"] != "", "approach"])
        blocks += [
            "**Sanity checks** (Adebayo et al. 2018) on the first images of the sample: median Spearman similarity "
            "of each approach's maps to its original ones once every layer of the model is re-initialised "
            "(top-down, cascading), and when another class (seeded at random) is explained. An approach whose "
            f"maps keep a similarity above {INSENSITIVE_THRESHOLD} with a random model is flagged: its maps do "
            "not depend on what the model learnt.",
            Table(writer.add_table("sanity", table), decimals=2),
            (f"Flagged: {listed(flagged)}." if flagged else "No approach is flagged."),
            writer.add_figure(randomisation_figure(curves, writer.stem("randomisation"), INSENSITIVE_THRESHOLD),
                              "Median Spearman similarity to the original maps as layers are randomised top-down "
                              "(dashed: the flag threshold)."),
        ]
    return [Section(TITLE, blocks)]
