"""Analysis building blocks: Table 2 from the paper's Table 1, Kendall tau-b, tau distance,
embeddings and the bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from embryo_xai.analysis.agreement import map_agreement
from embryo_xai.analysis.bootstrap import bootstrap, resample_counts, resampled_means
from embryo_xai.analysis.embedding import ranking_points, tsne, umap_embedding
from embryo_xai.analysis.gallery import resize_maps
from embryo_xai.analysis.kendall import metric_kendall, tau_b_matrix, tau_b_rows, tau_distance
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.published import load_published_table
from embryo_xai.analysis.ranking import ranks, table2
from embryo_xai.analysis.spec import METRICS, Approach, embedding_metrics, higher_is_better
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
    oriented = {m: paper.means[m].to_numpy() * (1 if higher_is_better(m) else -1) for m in METRICS}
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
    assert points.vectors.shape == (len(embedding_metrics(METRICS)) * 8, 5)
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
    assert subset.vectors.shape[0] == len(embedding_metrics(METRICS)) * 4


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
        dominant[2, m] = 10.0 if higher_is_better(metric) else -10.0
    firsts = bootstrap(dominant, approaches, n_resamples=50, seed=0).ranks
    assert (firsts[firsts["approach"] == "RISE"]["p_first"] == 1.0).all()


def test_mid_ranks_share_ties_and_keep_missing_last() -> None:
    means = np.array([[0.5, 0.2], [0.5, np.nan], [0.9, 0.1], [0.5, np.nan]])  # columns: iauc (higher), dauc (lower)
    got = ranks(means, ("iauc", "dauc"), ties="average")
    assert got[:, 0].tolist() == [3.0, 3.0, 1.0, 3.0]  # three tied for ranks 2-4
    assert got[:, 1].tolist() == [2.0, 3.5, 1.0, 3.5]  # the two missing share the last ranks
    stacked = ranks(np.stack([means, means[::-1]]), ("iauc", "dauc"), ties="average")
    assert np.array_equal(stacked[1], got[::-1])
    with pytest.raises(ValueError, match="appearance, average"):
        ranks(means, ("iauc", "dauc"), ties="first")


def test_bootstrap_splits_ties_for_first_whatever_the_order() -> None:
    """Two approaches with identical scores that beat the rest: P(first) = 1/2 each, in any list order."""
    values = _values(n_images=30)
    for m, metric in enumerate(METRICS):
        values[[1, 3], m] = 10.0 if higher_is_better(metric) else -10.0
    approaches = [Approach("cnn", m) for m in ("am", "gradcampp", "rise", "scorecam", "ablationcam")]
    result = bootstrap(values, approaches, n_resamples=50, seed=0).ranks.set_index(["group", "approach"])
    reverse = bootstrap(values[::-1], approaches[::-1], n_resamples=50, seed=0).ranks.set_index(["group", "approach"])
    pd.testing.assert_frame_equal(result, reverse.loc[result.index])
    tied = result.xs("Grad-CAM++", level="approach"), result.xs("Score-CAM", level="approach")
    for frame in tied:
        assert np.allclose(frame["p_first"], 0.5)
        assert np.allclose(frame[["average_rank", "low", "high"]], 1.5)  # mid-rank of ranks 1 and 2
    assert np.allclose(result.groupby("group")["p_first"].sum(), 1.0)


def test_tau_b_rows_equals_scipy_on_long_vectors_with_ties() -> None:
    rng = np.random.default_rng(1)
    for length in (2, 7, 49, 1000):
        x = rng.integers(0, 6, size=(6, length)).astype(float)
        y = rng.integers(0, 9, size=(6, length)).astype(float)
        x[1], y[2] = rng.random(length), rng.random(length)
        x[3] = 2.0  # constant: undefined
        expected = [kendalltau(a, b).statistic for a, b in zip(x, y)]
        np.testing.assert_allclose(tau_b_rows(x, y), expected, atol=1e-12)
    assert np.isnan(tau_b_rows(np.array([[1.0, np.nan, 2.0]]), np.array([[1.0, 2.0, 3.0]]))).all()


def test_map_agreement_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    coarse = rng.random((4, 7, 7)).astype(np.float32)
    fine = resize_maps(coarse, (28, 28))  # what the coarse maps become at the finer resolution
    maps = {"am": coarse, "gradcampp": coarse.copy(), "rise": -coarse, "scorecam": rng.random((4, 14, 14)),
            "ablationcam": fine}
    approaches = [Approach("cnn", method) for method in maps]
    run_dirs = {}
    for approach, array in zip(approaches, maps.values()):
        run_dirs[approach] = [tmp_path / approach.method]
        run_dirs[approach][0].mkdir()
        np.savez(run_dirs[approach][0] / "maps.npz", image_id=np.arange(10, 14), maps=array)
    means = pd.DataFrame(np.nan, index=[a.label for a in approaches], columns=list(METRICS))
    study = Study(approaches, means, means["dauc"], image_ids=np.arange(10, 15), run_dirs=run_dirs)
    result = map_agreement(study)
    tau = result.tau.to_numpy()
    assert np.allclose(tau, tau.T, equal_nan=True)
    assert np.allclose(np.diag(tau), 1.0)
    assert result.tau.loc["AM", "Grad-CAM++"] == pytest.approx(1.0)
    assert result.tau.loc["AM", "RISE"] == pytest.approx(-1.0)
    assert result.tau.loc["AM", "Ablation-CAM"] == pytest.approx(1.0)  # coarse map upsampled to the finer one
    assert abs(result.tau.loc["AM", "Score-CAM"]) < 0.2  # unrelated maps
    assert (result.n_images.to_numpy() == 4).all()  # image 14 has no map
    # one map missing for an approach, and a constant map (no order): left out of that pair only
    constant_first = maps["am"].copy()
    constant_first[0] = 0.5
    np.savez(run_dirs[approaches[0]][0] / "maps.npz", image_id=np.arange(10, 14), maps=constant_first)
    np.savez(run_dirs[approaches[1]][0] / "maps.npz", image_id=np.arange(11, 14), maps=coarse[1:])
    partial = map_agreement(study)
    assert partial.n_images.loc["AM", "Grad-CAM++"] == 3 and partial.n_images.loc["AM", "RISE"] == 3
    assert partial.n_images.loc["Grad-CAM++", "RISE"] == 3 and partial.n_images.loc["RISE", "RISE"] == 4
    assert map_agreement(Study(approaches, means, means["dauc"], image_ids=np.arange(3), run_dirs={})) is None
