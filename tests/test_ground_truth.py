"""The ground-truth layer's arithmetic (metrics/ground_truth.py) and meta-evaluation (analysis/meta_evaluation.py)
on hand-built cases: a model that reads one region, maps equal to it, rankings with known tau."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from embryo_xai.analysis.meta_evaluation import controls_last, meta_evaluate, tau_complete_cases
from embryo_xai.metrics.ground_truth import (
    ground_truth_faithfulness,
    masked_spearman,
    structure_saliency,
    top1_hit,
    true_importance,
)
from embryo_xai.scoring import ClassScore

SIDE = 16


class RegionReader(nn.Module):
    """Two classes; class 1's logit is 8 x the mean brightness of the top-left quarter, class 0's is 0: the
    model reads that region only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, 0, : SIDE // 2, : SIDE // 2].mean((1, 2))
        return torch.stack([torch.zeros_like(region), 8 * region], 1)


def quadrant_masks() -> torch.Tensor:
    """(4, SIDE, SIDE) bool: the four quadrants, the first one the model reads."""
    masks = torch.zeros(4, SIDE, SIDE, dtype=torch.bool)
    half = SIDE // 2
    for k, (r, c) in enumerate([(0, 0), (0, half), (half, 0), (half, half)]):
        masks[k, r: r + half, c: c + half] = True
    return masks


def test_spearman_matches_scipy_with_ties_and_missing_structures() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (40, 7), generator=generator).float()  # many ties
    b = torch.randn(40, 7, generator=generator)
    valid = torch.rand(40, 7, generator=generator) > 0.3
    ours = masked_spearman(a, b, valid).numpy()
    for row in range(40):
        keep = valid[row].numpy()
        x, y = a[row].numpy()[keep], b[row].numpy()[keep]
        if keep.sum() < 2 or np.ptp(x) == 0:
            assert np.isnan(ours[row])
        else:
            assert ours[row] == pytest.approx(spearmanr(x, y).statistic, abs=1e-6)


def test_top1_hit_counts_ties_among_the_most_important_as_hits() -> None:
    saliency = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5], [0.2, 0.2, 0.1], [0.3, 0.1, 0.0]])
    importance = torch.tensor([[0.5, 0.0, 0.1], [0.5, 0.0, 0.1], [0.3, 0.3, 0.0], [0.2, 0.4, 0.0]])
    valid = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, False, False]])
    assert top1_hit(saliency, importance, valid).tolist()[:3] == [1.0, 0.0, 1.0]
    assert np.isnan(top1_hit(saliency, importance, valid)[3])  # one structure: nothing to choose from


def test_structure_saliency_is_the_mean_of_the_upsampled_map_over_each_mask() -> None:
    maps = torch.zeros(1, 2, 2)
    maps[0, 0, 0] = 1.0
    masks = quadrant_masks()[None]
    saliency = structure_saliency(maps, masks, upsample="nearest")
    assert saliency.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    empty = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    assert torch.isnan(structure_saliency(maps, empty)).all()  # a structure outside the crop


def test_a_model_reading_one_region_makes_it_the_single_important_structure() -> None:
    """Counterfactuals: each quadrant blacked out in turn. Only the first changes the score, so it alone is
    important, and a map equal to it scores ground-truth faithfulness 1 (Spearman and top-1); its opposite
    scores -1 and misses."""
    images = torch.rand(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    masks = quadrant_masks()
    removed = images[:, None].repeat(1, 4, 1, 1, 1)
    for k in range(4):
        removed[:, k][:, :, masks[k]] = 0.0
    structure_image = torch.arange(3).repeat_interleave(4)
    targets = torch.ones(3, dtype=torch.long)
    original, drops = true_importance(RegionReader(), images, removed.flatten(0, 1), structure_image, targets,
                                      ClassScore("logit"), batch_size=5)
    importance = drops.view(3, 4)
    assert torch.allclose(original, 8 * images[:, 0, :8, :8].mean((1, 2)))
    assert (importance[:, 0] > 1.0).all() and torch.equal(importance[:, 1:], torch.zeros(3, 3))
    structure_masks = masks[None].expand(3, -1, -1, -1)
    valid = torch.ones(3, 4, dtype=torch.bool)
    region_map = masks[0].float()[None].expand(3, -1, -1)
    perfect = ground_truth_faithfulness(structure_saliency(region_map, structure_masks), importance, valid)
    assert perfect["gt_spearman"].tolist() == [1.0] * 3 and perfect["gt_top1"].tolist() == [1.0] * 3
    wrong = ground_truth_faithfulness(structure_saliency(1 - region_map, structure_masks), importance, valid)
    assert wrong["gt_spearman"].tolist() == pytest.approx([-1.0] * 3) and wrong["gt_top1"].tolist() == [0.0] * 3


def test_meta_evaluation_finds_the_metric_that_ranks_like_the_ground_truth() -> None:
    """Four approaches (the last a control) on 30 images: a metric equal to the ground truth has tau 1, its
    reverse -1; noise that favours the control is below 0; only the first ranks the control last."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4, 30)) + np.array([3.0, 2.0, 1.0, -5.0])[:, None]
    favours_control = rng.normal(size=(4, 30)) + np.array([0.0, 0.0, 0.0, 3.0])[:, None]
    signed = np.stack([reference, -reference, favours_control], axis=1)  # (A, K, N)
    is_control = np.array([False, False, False, True])
    result = meta_evaluate(signed, reference, ["same", "reversed", "noise"], ["mask", "highlight", "mask"],
                           is_control, n_resamples=200, seed=0)
    table = result.table.set_index("metric")
    assert table.loc["same", "tau"] == pytest.approx(1.0) and table.loc["reversed", "tau"] == pytest.approx(-1.0)
    assert -1.0 < table.loc["noise", "tau"] < 0.0
    assert table.loc["same", "ci_low"] <= 1.0 <= table.loc["same", "ci_high"] + 1e-12
    assert table["controls_last"].tolist() == [True, False, False]  # sorted by tau: same, noise, reversed
    assert list(table.index) == ["same", "noise", "reversed"]


def test_tau_leaves_out_the_approaches_undefined_on_an_image() -> None:
    x = np.array([[1.0, 2.0, 3.0, np.nan], [1.0, 2.0, np.nan, np.nan], [3.0, 2.0, 1.0, 0.0]])
    y = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    tau = tau_complete_cases(x, y)
    assert tau[0] == pytest.approx(1.0) and np.isnan(tau[1]) and tau[2] == pytest.approx(-1.0)


def test_controls_last_needs_every_control_below_every_real_approach() -> None:
    is_control = np.array([False, False, True, True])
    assert controls_last(np.array([0.5, 0.4, 0.1, 0.3]), is_control)
    assert not controls_last(np.array([0.5, 0.2, 0.1, 0.3]), is_control)
    assert not controls_last(np.array([0.5, 0.4, 0.1, np.nan]), is_control)
