"""Benchmark reliability (Gomez et al. 2023): do the images agree on each metric's ranking, and how many
images make the best approach come first?"""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis.document import Section, Table
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.reliability import (
    PAPER_IMAGES,
    RELIABLE_ALPHA,
    TENTATIVE_ALPHA,
    ReliabilityResult,
    critical_text,
    reliability,
    reliability_figure,
)
from embryo_xai.analysis.sections import listed, per_image
from embryo_xai.analysis.writer import ReportWriter


def display_table(result: ReliabilityResult, n_images: int) -> pd.DataFrame:
    """The report's view of `result.table`: the interval in one cell, "> max" where never reached."""
    table = result.table
    intervals = [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(table["ci_low"], table["ci_high"])]
    return pd.DataFrame(
        {
            "metric": table["metric"],
            "alpha": table["alpha"],
            f"{int(result.level * 100)}% CI": intervals,
            "images": table["n_images"],
            "best": table["best"],
            f"P(first), {n_images} images": table["p_first"],
            "critical n": critical_text(table),
        }
    )


def agreement_sentence(table: pd.DataFrame) -> str:
    """Which metrics' rankings the images agree on, by Krippendorff's thresholds."""
    alpha = table["alpha"]
    tentative = f"agree tentatively on {{}} ({TENTATIVE_ALPHA} ≤ alpha < {RELIABLE_ALPHA})"
    parts = []
    for chosen, words in (
        (alpha >= RELIABLE_ALPHA, f"agree on the ranking of {{}} (alpha ≥ {RELIABLE_ALPHA})"),
        ((alpha >= TENTATIVE_ALPHA) & (alpha < RELIABLE_ALPHA), tentative),
        (~(alpha >= TENTATIVE_ALPHA), "do not agree on {}"),  # NaN (undefined) counts as no agreement
    ):
        if chosen.any():
            parts.append(words.format(listed(list(table.loc[chosen, "metric"]))))
    return "The images " + "; they ".join(parts) + "."


def paper_size_sentence(result: ReliabilityResult) -> str:
    """What the paper's 100 images buy: P(best first) at 100 and the metrics for which that reaches the target."""
    table, curve = result.table, result.curve
    at_paper = curve[curve["n"] == PAPER_IMAGES].set_index("metric")["p_first"]
    enough = [m for m in table["metric"] if at_paper[m] >= result.target]
    target = f"{result.target:.0%}"
    if len(enough) == len(table):
        return (
            f"With the paper's {PAPER_IMAGES} images, the best approach of every metric comes first with "
            f"probability ≥ {target}."
        )
    short = table[~table["metric"].isin(enough)]
    needs = listed([f"{m} {n}" for m, n in zip(short["metric"], critical_text(short))])
    bought = f"for {listed(enough)} only" if enough else "for no metric"
    return (
        f"The paper's {PAPER_IMAGES} images make the best approach come first with probability ≥ {target} "
        f"{bought} (P(first) at {PAPER_IMAGES} from {at_paper.min():.2f} to {at_paper.max():.2f}); "
        f"critical n of the others: {needs}."
    )


@per_image
def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    n_boot = int(cfg.get("bootstrap", 0) or 0)
    if n_boot <= 0:  # both the interval and the critical size are resampled
        return []
    level = float(cfg.get("ci", 0.95))
    n_images = study.values.shape[2]
    result = reliability(study.values, study.labels, study.metrics, n_boot, int(cfg.get("seed", 0)), level)
    writer.add_table("reliability", result.table)
    writer.add_table("reliability_curve", result.curve, log=False)
    return [
        Section(
            "Benchmark reliability (Krippendorff's alpha, critical test size)",
            [
                "Each test image is a rater that ranks the approaches on a metric (1 = best, ties share their "
                "mid-rank, an undefined value is a missing rating). Krippendorff's ordinal alpha says how far the "
                "images agree on that ranking: 1 = every image ranks alike, 0 = no more than chance "
                f"({int(level * 100)}% percentile bootstrap over images, {n_boot} resamples). `critical n` is the "
                "smallest number of images at which the approach with the best mean comes first in "
                f"≥ {result.target:.0%} of resamples of n images drawn with replacement from the {n_images} here "
                f"(grid up to {int(result.table['max_n'].iloc[0])}; curve: `reliability_curve.csv`).",
                Table(display_table(result, n_images), decimals=2),
                agreement_sentence(result.table) + " " + paper_size_sentence(result),
                writer.add_figure(
                    reliability_figure(result, writer.stem("reliability")),
                    "Krippendorff's alpha per metric with its bootstrap interval (dashed: 0.8, dotted: 0.667), and "
                    "P(best approach first) against the number of test images (dashed: the target; dotted: the "
                    "paper's 100).",
                ),
            ],
        )
    ]
