"""Faithfulness engine: definitions checked against hand computations on a linear toy model
(whose class score is a known sum of pixel contributions), batching invariance, edge cases,
forward counts and the torchmetrics wrappers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from embryo_xai.metrics import (
    DAUC,
    METRIC_NAMES,
    FaithfulnessConfig,
    FaithfulnessMetric,
    faithfulness,
    forward_passes_per_image,
    package_config,
)
from embryo_xai.metrics.perturb import highlight_mask, rank_blocks, substrate


class LinearScore(nn.Module):
    """Two classes: logit_0 = scale * sum(weight * x), logit_1 = 0. Counts the images it sees."""

    def __init__(self, weight: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.scale = scale
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        logit = self.scale * (x * self.weight).flatten(1).sum(1)
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def block_of_pixel(size: int, map_size: int) -> np.ndarray:
    """Independent statement of the block geometry: row i belongs to block floor(i * h / H)."""
    return (np.arange(size) * map_size) // size


def reference_curves(contributions: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-pixel contributions (H, W) of a linear logit, one block per step, black start/end."""
    size, map_size = contributions.shape[0], saliency.shape[0]
    rows = block_of_pixel(size, map_size)
    block = rows[:, None] * map_size + rows[None, :]
    per_block = np.bincount(block.ravel(), weights=contributions.ravel(), minlength=map_size**2)
    pixels = np.bincount(block.ravel(), minlength=map_size**2)
    order = np.argsort(-saliency.ravel(), kind="stable")
    inserted = np.concatenate([[0.0], np.cumsum(per_block[order])])
    deleted = per_block.sum() - inserted
    fraction = np.concatenate([[0.0], np.cumsum(pixels[order])]) / size**2
    return deleted, inserted, fraction, per_block.reshape(map_size, map_size)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


TOY_OPTIONS = {"score": "logit", "insertion_start": "black", "normalize_curve": False}


@pytest.mark.parametrize(("size", "map_size"), [(16, 4), (32, 5)])  # divisible and not divisible
def test_curves_match_hand_computation(size: int, map_size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    weight = torch.rand(1, 3, size, size, generator=generator)
    images = torch.rand(1, 3, size, size, generator=generator)
    model = LinearScore(weight)
    contributions = (weight * images).sum(1)[0].double().numpy()
    saliency = torch.rand(1, map_size, map_size, generator=generator)

    deleted, inserted, fraction, per_block = reference_curves(contributions, saliency[0].numpy())
    values = faithfulness(model, images, saliency, targets=torch.tensor([0]), **TOY_OPTIONS)
    assert values["dauc"].item() == pytest.approx(np.trapezoid(deleted, fraction), rel=1e-5)
    assert values["iauc"].item() == pytest.approx(np.trapezoid(inserted, fraction), rel=1e-5)
    normalised = faithfulness(model, images, saliency, targets=torch.tensor([0]), metrics="dauc",
                              score="logit")
    expected_normalised = np.trapezoid(deleted / deleted.max(), fraction)
    assert normalised["dauc"].item() == pytest.approx(expected_normalised, rel=1e-5)

    # A map equal to the true block contributions is perfectly correlated with the score
    # variations (DC = IC = 1); its reverse is perfectly anti-correlated.
    truth = torch.from_numpy(per_block).float()[None]
    best = faithfulness(model, images, truth, targets=torch.tensor([0]), **TOY_OPTIONS)
    worst = faithfulness(model, images, -truth, targets=torch.tensor([0]), **TOY_OPTIONS)
    for name in ("dc", "ic"):
        assert best[name].item() == pytest.approx(1.0, abs=1e-5)
        assert worst[name].item() == pytest.approx(-1.0, abs=1e-5)
    assert best["dauc"] < worst["dauc"] and best["iauc"] > worst["iauc"]


def test_single_step_metrics_analytic() -> None:
    """Left half pushes class 0 up, right half down; the map highlights one half exactly."""
    size, scale = 16, 0.02
    weight = torch.ones(1, 3, size, size)
    weight[..., size // 2:] = -1
    model = LinearScore(weight, scale)
    images = torch.ones(1, 3, size, size)
    left = torch.zeros(1, 4, 4)
    left[..., :2] = 1
    half_logit = scale * 3 * size * size / 2
    sigmoid = lambda v: 1 / (1 + math.exp(-v))
    options = {"metrics": ("iic", "ad", "add"), "upsample": "nearest", "targets": torch.tensor([0])}

    good = faithfulness(model, images, left, **options)
    assert good["iic"].item() == 1 and good["ad"].item() == 0
    assert good["add"].item() == pytest.approx((0.5 - sigmoid(-half_logit)) / 0.5, rel=1e-5)

    bad = faithfulness(model, images, 1 - left, **options)
    assert bad["iic"].item() == 0 and bad["add"].item() == 0
    assert bad["ad"].item() == pytest.approx((0.5 - sigmoid(-half_logit)) / 0.5, rel=1e-5)
    unclipped = faithfulness(model, images, 1 - left, clip_add=False, **options)
    assert unclipped["add"].item() == pytest.approx((0.5 - sigmoid(half_logit)) / 0.5, rel=1e-5)


def test_batching_and_grouping_do_not_change_values() -> None:
    generator = torch.Generator().manual_seed(7)
    model = LinearScore(torch.randn(1, 3, 20, 20, generator=generator), scale=0.05)
    images = torch.rand(5, 3, 20, 20, generator=generator)
    maps = torch.rand(5, 6, 6, generator=generator)
    packed = faithfulness(model, images, maps, batch_size=1000, images_per_group=16)
    chunked = faithfulness(model, images, maps, batch_size=5, images_per_group=2)
    alone = faithfulness(model, images[3:4], maps[3:4])
    predicted = faithfulness(model, images, maps, targets=model(images).argmax(1))
    for name in METRIC_NAMES:
        torch.testing.assert_close(packed[name], chunked[name], equal_nan=True)
        torch.testing.assert_close(packed[name], predicted[name], equal_nan=True)
        torch.testing.assert_close(packed[name][3:4], alone[name], equal_nan=True)


def test_forward_counts_and_grouping() -> None:
    model = LinearScore(torch.rand(1, 3, 28, 28))
    images = torch.rand(3, 3, 28, 28)
    for metrics, map_size, options, expected in [
        (METRIC_NAMES, 14, {"max_steps": 49}, 1 + 2 * 49 + 2),  # 196 blocks grouped 4 per step
        (("dauc",), 14, {}, 1 + 196),
        (("iic", "ad"), 7, {}, 2),
        (("dauc",), 15, {"step_grouping": "fixed_size"}, 1 + 225),  # package: 225 // 196 = 1 block/step
        (("dauc",), 15, {}, 1 + 196),  # even groups keep the 196-step cap
    ]:
        model.images_seen = 0
        faithfulness(model, images, torch.rand(3, map_size, map_size), metrics=metrics, **options)
        assert model.images_seen == 3 * expected
        assert forward_passes_per_image((map_size, map_size), metrics, **options) == expected


def test_constant_map_is_defined_with_raster_ties() -> None:
    model = LinearScore(torch.rand(1, 3, 16, 16), scale=0.1)
    images = torch.rand(2, 3, 16, 16)
    constant = torch.full((2, 4, 4), 0.3)
    block_order = -torch.arange(16.0).view(1, 4, 4).expand(2, -1, -1)  # deletes block 0 first
    tied = faithfulness(model, images, constant, tie_break="raster")
    ordered = faithfulness(model, images, block_order)
    for name in ("dauc", "iauc"):
        assert torch.isfinite(tied[name]).all()
        torch.testing.assert_close(tied[name], ordered[name])
    assert tied["dc"].isnan().all() and tied["ic"].isnan().all()
    assert tied.valid.all()
    # A constant map normalises to "highlights nothing": I_m is black, I_{1-m} the image.
    assert (tied["add"] == 0).all()


def _relu_map(seed: int) -> torch.Tensor:
    """(2, 8, 8) maps with 12 distinct positive blocks and 52 tied zeros (a ReLU-ed CAM)."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.zeros(2, 64)
    for row in maps:
        row[torch.randperm(64, generator=generator)[:12]] = torch.rand(12, generator=generator) + 0.1
    return maps.view(2, 8, 8)


def test_random_tie_break_is_seeded_and_keeps_saliency_order() -> None:
    maps = _relu_map(0)
    flat = maps.flatten(1)
    raster, _ = rank_blocks(maps, "raster")
    # raster = the old behaviour: a stable descending argsort (ties in block-index order)
    assert torch.equal(raster, torch.from_numpy(np.argsort(-flat.numpy(), axis=1, kind="stable")))
    seed0, rank0 = rank_blocks(maps, "random", seed=0)
    assert torch.equal(seed0, rank_blocks(maps, "random", seed=0)[0])
    assert not torch.equal(seed0[:, 12:], rank_blocks(maps, "random", seed=1)[0][:, 12:])
    assert not torch.equal(seed0[:, 12:], raster[:, 12:])  # the zeros are not deleted top-left first
    # Untied blocks keep strict saliency order: the same 12 blocks first, in the same order,
    # and the ranking is non-increasing in saliency.
    assert torch.equal(seed0[:, :12], raster[:, :12])
    assert (flat.gather(1, seed0).diff(dim=1) <= 0).all()
    assert torch.equal(rank0.gather(1, seed0), torch.arange(64).expand(2, -1))  # rank inverts order
    # The same tie order for every image of a map size, whatever the batch.
    assert torch.equal(rank_blocks(maps[1:], "random", seed=0)[0], seed0[1:])
    # Without ties the tie-break changes nothing.
    distinct = torch.rand(2, 8, 8)
    assert torch.equal(rank_blocks(distinct, "random", seed=3)[0], rank_blocks(distinct, "raster")[0])


def test_engine_uses_the_random_tie_order() -> None:
    model = LinearScore(torch.rand(1, 3, 16, 16), scale=0.1)
    images = torch.rand(2, 3, 16, 16)
    constant = torch.full((2, 4, 4), 0.3)
    order, _ = rank_blocks(constant, "random", seed=5)
    # A map strictly decreasing along that order deletes the same blocks at the same steps.
    as_ranked = torch.empty(2, 16).scatter_(1, order, -torch.arange(16.0).expand(2, -1)).view(2, 4, 4)
    tied = faithfulness(model, images, constant, metrics=("dauc", "iauc"), tie_break_seed=5)
    ordered = faithfulness(model, images, as_ranked, metrics=("dauc", "iauc"), tie_break="raster")
    for name in ("dauc", "iauc"):
        torch.testing.assert_close(tied[name], ordered[name])
    other = faithfulness(model, images, constant, metrics=("dauc",), tie_break_seed=6)
    assert not torch.allclose(tied["dauc"], other["dauc"])
    assert FaithfulnessConfig().tie_break == "random" and package_config().tie_break == "raster"
    with pytest.raises(ValueError, match="choose one of random, raster"):
        faithfulness(model, images, constant, tie_break="sorted")
    # Batching does not change a random tie order either.
    maps = _relu_map(1)
    grouped = faithfulness(model, images, maps, images_per_group=1, batch_size=7)
    packed = faithfulness(model, images, maps)
    for name in METRIC_NAMES:
        torch.testing.assert_close(grouped[name], packed[name], equal_nan=True)


def test_nan_map_marks_only_its_row_invalid() -> None:
    model = LinearScore(torch.rand(1, 3, 16, 16), scale=0.1)
    images = torch.rand(3, 3, 16, 16)
    maps = torch.rand(3, 4, 4)
    maps[1, 2, 2] = torch.nan
    values = faithfulness(model, images, maps)
    clean = faithfulness(model, images[[0, 2]], maps[[0, 2]])
    assert values.valid.tolist() == [True, False, True]
    for name in METRIC_NAMES:
        assert values[name][1].isnan()
        torch.testing.assert_close(values[name][[0, 2]], clean[name])


def test_zero_class_score_gives_undefined_drops() -> None:
    """c_I = 0 (probability underflow): AD and ADD are 0/0, reported as NaN."""
    model = LinearScore(torch.ones(1, 3, 8, 8), scale=-1e4)
    values = faithfulness(model, torch.ones(2, 3, 8, 8), torch.rand(2, 2, 2), targets=torch.zeros(2).long(),
                          metrics=("iic", "ad", "add"))
    assert values["ad"].isnan().all() and values["add"].isnan().all()
    assert (values["iic"] == 0).all()


def test_substrates_and_masks() -> None:
    images = torch.rand(2, 3, 24, 24)
    config = FaithfulnessConfig()
    torch.testing.assert_close(substrate(images, "mean", config)[..., 5, 7], images.mean((2, 3)))
    flat = torch.full((1, 3, 24, 24), 0.4)
    torch.testing.assert_close(substrate(flat, "gaussian", config), flat)  # reflect padding
    box = substrate(flat, "blur", config)  # zero padding darkens the border, as the package
    assert box[..., 12, 12].allclose(torch.tensor(0.4)) and (box[..., 0, 0] < 0.4).all()
    maps = torch.rand(2, 3, 3)
    paper = highlight_mask(maps, (24, 24), FaithfulnessConfig(upsample="bicubic"))
    assert paper.amin() == 0 and paper.amax() == 1
    model = LinearScore(torch.rand(1, 3, 24, 24), scale=0.1)
    for option in ({"deletion_substrate": "blur"}, {"deletion_substrate": "mean"},
                   {"insertion_start": "gaussian", "blur_kernel": 5, "blur_sigma": 2.0}):
        values = faithfulness(model, images, maps, metrics=("dauc", "iauc"), **option)
        assert torch.isfinite(values["dauc"]).all() and torch.isfinite(values["iauc"]).all()


def test_bad_requests_name_the_choices() -> None:
    model = LinearScore(torch.rand(1, 3, 8, 8))
    images, maps = torch.rand(1, 3, 8, 8), torch.rand(1, 2, 2)
    with pytest.raises(ValueError, match="known metrics: dauc, iauc, dc, ic, iic, ad, add"):
        faithfulness(model, images, maps, metrics=("dauc", "auc"))
    with pytest.raises(ValueError, match="unknown faithfulness option"):
        faithfulness(model, images, maps, n_steps=3)
    with pytest.raises(ValueError, match="choose one of black, blur"):
        faithfulness(model, images, maps, deletion_substrate="white")
    with pytest.raises(ValueError, match="maps must be"):
        faithfulness(model, images, torch.rand(2, 2, 2))


def test_torchmetrics_accumulates_per_image_values() -> None:
    model = LinearScore(torch.rand(1, 3, 16, 16), scale=0.1).train()
    batches = [(torch.rand(2, 3, 16, 16), torch.rand(2, 4, 4)),
               (torch.rand(2, 3, 16, 16), torch.full((2, 4, 4), 1.0))]
    labels = torch.ones(2, dtype=torch.long)
    metric, single = FaithfulnessMetric(), DAUC()
    by_label = FaithfulnessMetric("dauc", explained_class="label")
    for images, maps in batches:
        for accumulator in (metric, single, by_label):
            accumulator.update(model, images, maps, labels)
    assert model.training  # eval mode only during the evaluation
    unbatched = [faithfulness(model, images, maps) for images, maps in batches]
    expected = {name: torch.cat([values[name] for values in unbatched]) for name in METRIC_NAMES}
    per_image = metric.per_image()
    for name in METRIC_NAMES:
        torch.testing.assert_close(per_image[name], expected[name], equal_nan=True)
        torch.testing.assert_close(metric.compute()[name], expected[name].nanmean())
    assert metric.undefined_counts()["dc"] == 2 and metric.valid().all()
    torch.testing.assert_close(single.compute(), expected["dauc"].mean())
    labelled = torch.cat([faithfulness(model, i, m, labels, "dauc")["dauc"] for i, m in batches])
    torch.testing.assert_close(by_label.per_image()["dauc"], labelled)
    assert not torch.allclose(labelled, expected["dauc"])


def test_each_submodule_mode_is_restored() -> None:
    """A training-mode wrapper around an eval-mode model keeps both modes after the call."""
    inner = LinearScore(torch.rand(1, 3, 8, 8))
    wrapper = nn.Sequential(inner).train()
    inner.eval()
    seen_modes = []
    inner.register_forward_pre_hook(lambda module, _: seen_modes.append(module.training))
    faithfulness(wrapper, torch.rand(1, 3, 8, 8), torch.rand(1, 2, 2), metrics="iic")
    assert wrapper.training and not inner.training and not any(seen_modes)
