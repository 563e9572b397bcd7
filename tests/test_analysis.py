"""Analysis building blocks: Table 2 from the paper's Table 1, Kendall tau-b, tau distance,
embeddings and the bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from embryo_xai.analysis.bootstrap import bootstrap, resample_counts, resampled_means
from embryo_xai.analysis.embedding import ranking_points, tsne, umap_embedding
from embryo_xai.analysis.kendall import metric_kendall, tau_b_matrix, tau_distance
from embryo_xai.analysis.loading import load_published_table
from embryo_xai.analysis.ranking import ranks, table2
from embryo_xai.analysis.spec import EMBEDDING_METRICS, HIGHER_IS_BETTER, METRICS, Approach
from embryo_xai.analysis.tables import best_rows, table1, to_latex, to_markdown

PAPER_TABLE1 = Path(__file__).parent / "data" / "paper_table1.csv"

# The paper's Table 2 as printed: (average rank, approach, type), best first.
PAPER_TABLE2 = {
    "Mask": [
        (1.67, "BR-NPA", "Attention"),
        (2.33, "InterByParts", "Attention"),
        (4.33, "B-CNN", "Attention"),
        (4.33, "Ablation-CAM", "Post-Hoc"),
        (5.67, "Grad-CAM++", "Post-Hoc"),
        (5.67, "Score-CAM", "Post-Hoc"),
        (6.67, "ABN", "Attention"),
        (6.67, "RISE", "Post-Hoc"),
        (7.67, "AM", "Post-Hoc"),
    ],
    "Highlight": [
        (2.75, "Score-CAM", "Post-Hoc"),
        (3.0, "Ablation-CAM", "Post-Hoc"),
        (3.25, "Grad-CAM++", "Post-Hoc"),
        (3.75, "RISE", "Post-Hoc"),
        (4.75, "AM", "Post-Hoc"),
        (5.5, "ABN", "Attention"),
        (5.5, "B-CNN", "Attention"),
        (8.0, "BR-NPA", "Attention"),
        (8.5, "InterByParts", "Attention"),
    ],
}


@pytest.fixture(scope="module")
def paper():
    return load_published_table(PAPER_TABLE1)


def test_paper_table1_transcribed(paper) -> None:
    assert paper.labels == [
        "AM",
        "Grad-CAM++",
        "RISE",
        "Score-CAM",
        "Ablation-CAM",
        "ABN",
        "InterByParts",
        "B-CNN",
        "BR-NPA",
    ]
    assert paper.means.loc["BR-NPA", "dauc"] == pytest.approx(0.0709)
    assert paper.means.loc["Ablation-CAM", "dc"] == pytest.approx(0.272)
    # The CNN's accuracy is printed once for its five methods.
    assert paper.accuracy.loc["Score-CAM"] == pytest.approx(71.0)
    assert paper.accuracy.loc["InterByParts"] == pytest.approx(71.3)
    assert paper.incomplete.empty


def test_table2_reproduces_the_paper(paper) -> None:
    tables = table2(paper.means, paper.approaches)
    for group, expected in PAPER_TABLE2.items():
        got = tables[group]
        assert [round(r, 2) for r in got["average_rank"]] == [r for r, _, _ in expected]
        assert list(got["approach"]) == [a for _, a, _ in expected]
        assert list(got["type"]) == [t for _, _, t in expected]


def test_table1_best_marks(paper) -> None:
    frame = table1(paper)
    best = best_rows(frame)
    label = dict(enumerate(frame["Approach"]))
    # The paper bolds: DAUC BR-NPA, IAUC RISE, DC Ablation-CAM, IC ABN, IIC Ablation-CAM, AD Score-CAM, ADD BR-NPA.
    assert {c: [label[i] for i in rows] for c, rows in best.items() if c != "Accuracy"} == {
        "DAUC": ["BR-NPA"],
        "IAUC": ["RISE"],
        "DC": ["Ablation-CAM"],
        "IC": ["ABN"],
        "IIC": ["Ablation-CAM"],
        "AD": ["Score-CAM"],
        "ADD": ["BR-NPA"],
    }
    assert [label[i] for i in best["Accuracy"]] == ["InterByParts"]
    assert "**0.071**" in to_markdown(frame, mark_best=True)
    assert "\\textbf{0.457}" in to_latex(frame, "Table 1", "tab:t1", mark_best=True)


def test_ranks_break_ties_by_appearance_and_put_missing_last() -> None:
    means = np.array([[0.5, 0.2], [0.5, np.nan], [0.9, 0.1]])  # columns: iauc (higher), dauc (lower)
    got = ranks(means, ("iauc", "dauc"))
    assert got[:, 0].tolist() == [2, 3, 1]
    assert got[:, 1].tolist() == [2, 3, 1]
    stacked = ranks(np.stack([means, means[::-1]]), ("iauc", "dauc"))
    assert stacked[1, :, 0].tolist() == [1, 2, 3]


def test_metric_kendall_equals_scipy_pair_by_pair(paper) -> None:
    tau = metric_kendall(paper.means)
    oriented = {m: paper.means[m].to_numpy() * (1 if HIGHER_IS_BETTER[m] else -1) for m in METRICS}
    for a in METRICS:
        for b in METRICS:
            expected = kendalltau(oriented[a], oriented[b], variant="b").statistic
            assert tau.loc[a.upper(), b.upper()] == pytest.approx(expected, abs=1e-12)
    # The paper's reading of Fig. 3: AD agrees with IIC, ADD disagrees with IIC.
    assert tau.loc["AD", "IIC"] > 0.5 and tau.loc["ADD", "IIC"] < -0.5


def test_tau_b_matrix_with_ties_equals_scipy() -> None:
    points = np.random.default_rng(0).integers(0, 4, size=(30, 9)).astype(float)
    got = tau_b_matrix(points)
    for i in range(0, 30, 3):
        for j in range(30):
            assert got[i, j] == pytest.approx(kendalltau(points[i], points[j]).statistic, abs=1e-12)
    constant = tau_b_matrix(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]))
    assert np.isnan(constant[0, 1])


def test_tau_distance_formula() -> None:
    tau = np.array(
        [[1.0, 0.0, -1.0, np.nan], [0.0, 1.0, 0.5, -0.5], [-1.0, 0.5, 1.0, 1.0], [np.nan, -0.5, 1.0, np.nan]]
    )
    d = tau_distance(tau)
    assert np.diag(d).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert d[0, 1] == pytest.approx(np.log(2))
    assert d[0, 2] == pytest.approx(-np.log(0.001 / 2))  # tau = −1 clipped to −0.999
    assert d[1, 2] == pytest.approx(-np.log(0.75))
    assert d[2, 3] == pytest.approx(0.0)
    assert d[0, 3] == pytest.approx(np.log(2))  # undefined tau read as 0


def _values(n_approaches: int = 5, n_images: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.random((n_approaches, len(METRICS), n_images))
    values[:, METRICS.index("iic")] = rng.integers(0, 2, size=(n_approaches, n_images))
    values[0, METRICS.index("dc"), 0] = np.nan
    return values


def test_embeddings_give_a_2d_point_per_metric_and_image() -> None:
    values = _values(n_images=8)
    values[:, METRICS.index("ad"), 3] = 0.0  # every approach ties: an undefined tau
    image_ids = np.arange(100, 108)
    points = ranking_points(values, image_ids)
    assert points.vectors.shape == (len(EMBEDDING_METRICS) * 8, 5)
    assert "iic" not in set(points.metric)
    assert points.n_constant == 1
    assert np.isfinite(points.distance).all() and np.allclose(points.distance, points.distance.T)
    first_ad = list(points.metric).index("ad")
    assert points.image_id[first_ad + 3] == 103
    # The DAUC vector is negated: its ranking matches the negated raw scores.
    assert np.array_equal(points.vectors[0], -values[:, 0, 0])
    for embed in (tsne, umap_embedding):
        coords = embed(points.distance, seed=0)
        assert coords.shape == (len(points.metric), 2) and np.isfinite(coords).all()
    subset = ranking_points(values, image_ids, max_images=4, seed=1)
    assert subset.vectors.shape[0] == len(EMBEDDING_METRICS) * 4


def test_resampled_means_are_weighted_means() -> None:
    values = _values()
    counts = resample_counts(10, 50, seed=3)
    assert (counts.sum(axis=1) == 10).all()
    means = resampled_means(values, counts)
    a, m, b = 2, 1, 7
    assert means[b, a, m] == pytest.approx(np.repeat(values[a, m], counts[b]).mean())
    ones = resampled_means(values, np.ones((1, 10), dtype=int))[0]
    assert np.allclose(ones, np.nanmean(values, axis=2))


def test_bootstrap_intervals_are_seeded_and_contain_the_mean() -> None:
    values = _values(n_images=40)
    approaches = [Approach("cnn", m) for m in ("am", "gradcampp", "rise", "scorecam", "ablationcam")]
    result = bootstrap(values, approaches, n_resamples=200, seed=0)
    again = bootstrap(values, approaches, n_resamples=200, seed=0)
    other = bootstrap(values, approaches, n_resamples=200, seed=1)
    assert result.means.equals(again.means) and result.ranks.equals(again.ranks)
    assert not np.allclose(result.means["low"], other.means["low"])
    means = result.means
    assert ((means["low"] <= means["mean"]) & (means["mean"] <= means["high"])).all()
    assert (means["low"] < means["high"]).all()
    ranks_ci = result.ranks
    assert (ranks_ci["low"] <= ranks_ci["high"]).all()
    assert np.allclose(ranks_ci.groupby("group")["p_first"].sum(), 1.0)
    # An approach that dominates every metric ranks first in every resample.
    dominant = values.copy()
    for m, metric in enumerate(METRICS):
        dominant[2, m] = 10.0 if HIGHER_IS_BETTER[metric] else -10.0
    firsts = bootstrap(dominant, approaches, n_resamples=50, seed=0).ranks
    assert (firsts[firsts["approach"] == "RISE"]["p_first"] == 1.0).all()
