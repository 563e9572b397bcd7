"""Benchmark reliability (issue 15.2): ordinal Krippendorff's alpha of the images' rankings and the
critical test size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.reliability import (
    PAPER_IMAGES,
    _one_hot,
    alpha_from_counts,
    critical_size,
    critical_text,
    first_probability,
    image_ranks,
    ordinal_alpha,
    rank_alpha,
    reliability,
    size_grid,
)
from embryo_xai.analysis.sections import reliability as reliability_section
from embryo_xai.analysis.spec import METRICS, Approach, higher_is_better
from embryo_xai.analysis.writer import ReportWriter

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing
# values: 4 observers (rows) × 12 units; the paper gives alpha_ordinal = .815.
TEXTBOOK = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)
LABELS = [f"approach {a}" for a in range(9)]


def _cube(shift: float, n_approaches: int = 9, n_images: int = 100, seed: int = 0, missing: float = 0.0) -> np.ndarray:
    """(A, 7, N): approach a better by a·shift on every metric (in each metric's direction), plus noise."""
    rng = np.random.default_rng(seed)
    signs = np.array([1.0 if higher_is_better(m) else -1.0 for m in METRICS])
    values = rng.normal(size=(n_approaches, len(METRICS), n_images))
    values += shift * np.arange(n_approaches)[:, None, None] * signs[None, :, None]
    values[rng.random(values.shape) < missing] = np.nan
    return values


def test_textbook_example_and_hand_computed_cases() -> None:
    assert round(ordinal_alpha(TEXTBOOK), 3) == 0.815
    # Two raters rank two units oppositely: o_12 = o_21 = 2, n_1 = n_2 = 2, delta^2 = (3 - 1)^2 = 4,
    # alpha = 1 - (n - 1) sum(o delta^2) / sum(n_c n_k delta^2) = 1 - 3 * 16 / 32.
    assert ordinal_alpha(np.array([[1.0, 2.0], [2.0, 1.0]])) == pytest.approx(-0.5)
    assert ordinal_alpha(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])) == pytest.approx(1.0)
    assert np.isnan(ordinal_alpha(np.array([[2.0, 2.0], [2.0, 2.0]])))  # one value: alpha undefined
    assert np.isnan(ordinal_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])))  # nothing pairable


def test_perfect_agreement_is_one_with_a_degenerate_interval() -> None:
    values = np.broadcast_to(np.arange(9.0)[:, None, None], (9, len(METRICS), 30)).copy()  # every image alike
    alpha, low, high = rank_alpha(values, METRICS, n_resamples=50)
    np.testing.assert_allclose([alpha, low, high], 1.0)


def test_ordinal_alpha_matches_krippendorff_with_missing_values_and_ties() -> None:
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(3)
    for raters, units, levels in ((2, 10, 3), (5, 40, 5), (30, 9, 7), (100, 9, 17)):
        ratings = rng.integers(1, levels + 1, size=(raters, units)).astype(float)
        ratings[:, 0] = ratings[:, 1]  # some agreement, so alpha is not only noise
        ratings[rng.random(ratings.shape) < 0.2] = np.nan
        expected = krippendorff.alpha(reliability_data=ratings, level_of_measurement="ordinal")
        assert ordinal_alpha(ratings) == pytest.approx(expected, abs=1e-12)
    expected = krippendorff.alpha(reliability_data=TEXTBOOK, level_of_measurement="ordinal")
    assert ordinal_alpha(TEXTBOOK) == pytest.approx(expected, abs=1e-12)


def test_rank_alpha_matches_krippendorff_on_the_images_rankings() -> None:
    """Images as raters of the approaches' mid-ranks, with tied values and missing ones."""
    krippendorff = pytest.importorskip("krippendorff")
    values = np.round(_cube(0.2, missing=0.1), 0)  # rounding makes many ties
    alpha, _, _ = rank_alpha(values, METRICS, n_resamples=10)
    ranked = image_ranks(values, METRICS)
    assert (ranked % 0.5 == 0)[np.isfinite(ranked)].all() and (ranked % 1 == 0.5).any()  # mid-ranks present
    expected = [krippendorff.alpha(reliability_data=r, level_of_measurement="ordinal") for r in ranked]
    np.testing.assert_allclose(alpha, expected, atol=1e-12)


def test_image_ranks_follow_each_metrics_direction_and_skip_missing() -> None:
    values = np.array([[0.1, 0.5], [0.3, np.nan], [0.3, 0.2]])[:, None, :].repeat(2, axis=1)  # (3, 2, 2)
    ranked = image_ranks(values, ("iauc", "dauc"))  # iauc: higher better, dauc: lower better
    np.testing.assert_array_equal(ranked[0, 0], [3.0, 1.5, 1.5])
    np.testing.assert_array_equal(ranked[1, 0], [1.0, 2.5, 2.5])
    np.testing.assert_array_equal(ranked[0, 1], [1.0, np.nan, 2.0])  # ranked among the defined two


def test_resample_weights_leave_copies_of_an_image_unpaired() -> None:
    """Weights {0, 1} are the sub-sample; doubling every image changes nothing."""
    domain = np.unique(TEXTBOOK[np.isfinite(TEXTBOOK)])
    hot = _one_hot(TEXTBOOK, domain)
    counts = hot.sum(axis=0)
    assert alpha_from_counts(2 * counts, 4 * counts) == pytest.approx(ordinal_alpha(TEXTBOOK), abs=1e-12)
    weights = np.array([1.0, 0.0, 1.0, 1.0])
    subset = np.einsum("r,ruv->uv", weights, hot)
    assert alpha_from_counts(subset, subset) == pytest.approx(ordinal_alpha(TEXTBOOK[weights == 1]), abs=1e-12)


def test_interval_contains_the_estimate_and_is_seeded() -> None:
    for shift in (0.0, 0.1, 0.5):
        values = _cube(shift, missing=0.05)
        result = reliability(values, LABELS, METRICS, n_resamples=300, seed=0)
        table = result.table
        assert ((table["ci_low"] <= table["alpha"]) & (table["alpha"] <= table["ci_high"])).all(), shift
        again = reliability(values, LABELS, METRICS, n_resamples=300, seed=0)
        pd.testing.assert_frame_equal(table, again.table)
        pd.testing.assert_frame_equal(result.curve, again.curve)
        other = reliability(values, LABELS, METRICS, n_resamples=300, seed=1)
        assert not np.allclose(table["ci_low"], other.table["ci_low"])
    # More agreement, higher alpha.
    alphas = [reliability(_cube(s), LABELS, METRICS, n_resamples=20).table["alpha"].mean() for s in (0.0, 0.1, 2.0)]
    assert alphas[0] < alphas[1] < alphas[2]
    assert abs(alphas[0]) < 0.05 and alphas[2] > 0.8


def test_critical_size_shrinks_as_the_best_approach_pulls_ahead() -> None:
    critical = []
    for lead in (0.5, 0.8, 1.2, 2.0):
        values = _cube(0.0, n_approaches=4, n_images=60, seed=1)
        signs = np.array([1.0 if higher_is_better(m) else -1.0 for m in METRICS])
        values[2] += lead * signs[:, None]  # approach 2 leads on every metric, in its direction
        table = reliability(values, LABELS[:4], METRICS, n_resamples=400, seed=0).table
        assert (table["best"] == LABELS[2]).all()
        critical.append(table["critical_n"].astype(float).fillna(np.inf).to_numpy())
    critical = np.array(critical)  # (leads, M)
    assert (np.diff(critical, axis=0) <= 0).all()
    assert (critical[-1] < critical[0]).all() and (critical[-1] <= 10).all()


def test_no_leader_never_reaches_the_target() -> None:
    values = _cube(0.0, n_approaches=3, n_images=40)
    values[0] += np.array([1.0 if higher_is_better(m) else -1.0 for m in METRICS])[:, None]
    values[1] = values[0]  # two identical leaders share first place: P(first) -> 1/2
    table = reliability(values, LABELS[:3], METRICS, n_resamples=200).table
    assert table["critical_n"].isna().all() and (table["max_n"] == 4 * 40).all()
    assert critical_text(table) == ["> 160"] * len(METRICS)
    assert (table["p_first"] <= 0.5).all() and (table["p_first"] > 0.45).all()
    assert (table["best"] == LABELS[0]).all()  # a tie for best: the first listed


def test_first_probability_and_the_grid() -> None:
    grid = size_grid(37)
    assert {5, 37, PAPER_IMAGES, 148}.issubset(set(grid)) and grid.max() == 148
    assert list(size_grid(30, sizes=[10, 50])) == [10, 30, 50]
    values = _cube(0.0, n_approaches=2, n_images=20)
    values[0] += 100.0 * np.array([1.0 if higher_is_better(m) else -1.0 for m in METRICS])[:, None]
    best, p = first_probability(values, METRICS, [1, 5], n_resamples=50)
    assert (best == 0).all() and (p == 1.0).all()
    # A dip below the target further up the grid is not "reached".
    p = np.array([[0.5, 0.96, 0.94, 0.97, 0.99], [0.2, 0.3, 0.4, 0.5, 0.9], [0.95, 1, 1, 1, 1]])
    np.testing.assert_array_equal(critical_size([5, 10, 20, 40, 80], p), [40, np.nan, 5])


def test_section_writes_table_figure_and_prose(tmp_path) -> None:
    approaches = [Approach("cnn", m) for m in ("am", "gradcampp", "rise", "scorecam", "ablationcam")]
    values = _cube(2.0, n_approaches=5, n_images=30)
    values[:, METRICS.index("iic")] = _cube(0.0, n_approaches=5, n_images=30, seed=2)[:, 0]  # no agreement
    study = Study(approaches=approaches, means=pd.DataFrame(), accuracy=pd.Series(dtype=float), values=values)
    writer = ReportWriter(tmp_path)
    cfg = OmegaConf.create({"bootstrap": 100, "ci": 0.95, "seed": 0})
    sections = reliability_section.section(study, writer, cfg)
    assert len(sections) == 1
    prose = " ".join(b for b in sections[0].blocks if isinstance(b, str))
    assert "agree on the ranking of DAUC, IAUC, DC, IC, AD and ADD (alpha ≥ 0.8); they do not agree on IIC." in prose
    assert "for DAUC, IAUC, DC, IC, AD and ADD only" in prose and "critical n of the others: IIC > 120." in prose
    assert (tmp_path / "figures" / "reliability.png").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "reliability.csv")
    assert list(csv["metric"]) == ["DAUC", "IAUC", "DC", "IC", "IIC", "AD", "ADD"]
    assert set(writer.tables) == {"reliability"} and set(writer.figures) == {"reliability"}
    assert reliability_section.section(study, writer, OmegaConf.create({"bootstrap": 0})) == []
