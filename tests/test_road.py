"""ROAD (``embryo_xai.metrics.road``): parity with pytorch-grad-cam 1.5.7 (test-only dependency) with the
noise off -- its ``NoisyLinearImputer`` (scipy's direct solve) and its ROAD scores on the same model, images
and maps -- and the metric's own promises: registration, determinism, batching, ties, bad input.

Maps are given at the image size with untied values (``rank / N``, exact in float32, so grad-cam's
``1 - map`` keeps them untied); there, grad-cam's threshold removes exactly our count of pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.metrics import FaithfulnessConfig, MetricInputs, faithfulness, list_metrics
from embryo_xai.metrics.imputation import noisy_linear_impute
from embryo_xai.metrics.registry import higher_is_better, metric_class, metric_group
from embryo_xai.metrics.road import (
    ROADMoRF,
    _ROADMetric,
    pixel_ranks,
    removed_counts,
    road_scores,
)

TOLERANCE = 1e-3


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.fc = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@pytest.fixture(scope="module")
def grad_cam_road():
    """pytorch-grad-cam's ROAD module; its parity tests skip without it, the others still run."""
    return pytest.importorskip("pytorch_grad_cam.metrics.road")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # a sharp random classifier, so imputing pixels moves its probabilities
        net.fc.weight.mul_(40)
    return net


def untied_maps(n: int, size: tuple[int, int], generator: torch.Generator, smooth: bool = True) -> torch.Tensor:
    """(n, H, W) maps with values rank / N: smooth blobs (a 5x5 map upsampled) or pixel noise."""
    height, width = size
    if smooth:
        raw = F.interpolate(torch.rand(n, 1, 5, 5, generator=generator), size=size, mode="bilinear")[:, 0]
    else:
        raw = torch.rand(n, height, width, generator=generator)
    ranks = raw.flatten(1).argsort(dim=1).argsort(dim=1).float()
    return (ranks / (height * width)).view(n, height, width)


def images_and_maps(n: int, size: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, *size, generator=generator)
    maps = untied_maps(n, size, generator)
    maps[1::2] = untied_maps(n // 2, size, generator, smooth=False)  # every other map: scattered holes
    return images, maps


def metric_inputs(model: nn.Module, images: torch.Tensor, maps: torch.Tensor) -> MetricInputs:
    with torch.inference_mode():
        logits = model(images)
    targets = logits.argmax(dim=1)
    scores = logits.softmax(dim=1).gather(1, targets[:, None])[:, 0]
    return MetricInputs(model, images, maps, targets, scores, FaithfulnessConfig())


def softmax_targets(model: nn.Module, images: torch.Tensor) -> list:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    with torch.no_grad():
        classes = model(images).argmax(dim=1)
    return [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]


@pytest.fixture
def grad_cam_without_noise(grad_cam_road, monkeypatch: pytest.MonkeyPatch) -> None:
    """grad-cam's ROAD classes build ``NoisyLinearImputer()`` (noise 0.01) inside; ours uses the class option."""
    class Noiseless(grad_cam_road.NoisyLinearImputer):
        def __init__(self) -> None:
            super().__init__(noise=0.0)

    monkeypatch.setattr(grad_cam_road, "NoisyLinearImputer", Noiseless)
    monkeypatch.setattr(_ROADMetric, "noise_std", 0.0)


@pytest.mark.parametrize("size", [(32, 32), (45, 37)])
def test_imputation_matches_grad_cam(grad_cam_road, size: tuple[int, int]) -> None:
    images, maps = images_and_maps(4, size)
    maps[2] = -maps[2]  # holes along the image border (the least relevant of a central blob)
    reference = grad_cam_road.NoisyLinearImputer(noise=0.0)
    for percentile in (10, 50, 90):
        threshold = torch.quantile(maps.flatten(1), 1 - percentile / 100, dim=1)
        removed = maps >= threshold[:, None, None]
        with torch.inference_mode():
            ours = noisy_linear_impute(images, removed)
        theirs = torch.stack([reference(image, (~hole).float()) for image, hole in zip(images, removed)])
        assert torch.equal(ours[~removed[:, None].expand_as(ours)], images[~removed[:, None].expand_as(images)])
        assert (ours - theirs).abs().max() < TOLERANCE, percentile


def test_noise_only_on_imputed_pixels() -> None:
    images, maps = images_and_maps(2, (24, 24))
    removed = maps > 0.6
    with torch.inference_mode():
        plain = noisy_linear_impute(images, removed)
        noisy = noisy_linear_impute(images, removed, noise=torch.full((3, 24, 24), 0.5))
    assert torch.allclose(noisy - plain, 0.5 * removed[:, None].float().expand_as(plain), atol=1e-6)


def test_removed_counts_are_grad_cams_threshold_counts() -> None:
    generator = torch.Generator().manual_seed(1)
    for size in ((32, 32), (45, 37)):
        saliency = untied_maps(1, size, generator, smooth=False)[0].numpy()
        n_pixels = saliency.size
        ours = removed_counts(n_pixels, (10, 25, 50, 75, 90))
        # grad-cam at percentile q keeps the pixels below np.percentile(map, q): MoRF removes the rest...
        morf = [int((saliency >= np.percentile(saliency, 100 - p)).sum()) for p in (10, 25, 50, 75, 90)]
        inverse = 1 - saliency  # ...and LeRF does the same on 1 - map
        lerf = [int((inverse >= np.percentile(inverse, 100 - p)).sum()) for p in (10, 25, 50, 75, 90)]
        assert ours == morf == lerf


@pytest.mark.parametrize("direction", ["morf", "lerf"])
def test_scores_per_percentile_match_grad_cam(grad_cam_road, model: nn.Module, direction: str) -> None:
    images, maps = images_and_maps(4, (32, 32), seed=2)
    inputs = metric_inputs(model, images, maps)
    percentiles = (10, 50, 90)
    with torch.inference_mode():
        ours = road_scores(inputs, direction, percentiles, noise_std=0.0) - inputs.original_scores
    reference = {"morf": grad_cam_road.ROADMostRelevantFirst, "lerf": grad_cam_road.ROADLeastRelevantFirst}[direction]
    targets = softmax_targets(model, images)
    for row, percentile in zip(ours, percentiles):
        metric = reference(percentile=100 - percentile)  # grad-cam's percentile: the share of pixels kept
        metric.perturbation.imputer.noise = 0.0
        theirs = torch.from_numpy(metric(images, maps.numpy(), targets, model))
        assert (row - theirs).abs().max() < TOLERANCE, percentile
    assert (ours[-1] - ours[0]).abs().max() > 0.01  # the model does react to the imputation


def test_metrics_match_grad_cam_averages(grad_cam_road, model: nn.Module, grad_cam_without_noise: None) -> None:
    images, maps = images_and_maps(4, (32, 32), seed=3)
    ours = faithfulness(model, images, maps, metrics=["road_morf", "road_lerf", "road", "ad"], batch_size=16)
    original = metric_inputs(model, images, maps).original_scores
    targets = softmax_targets(model, images)
    cams = maps.numpy()
    morf = grad_cam_road.ROADMostRelevantFirstAverage()(images, cams, targets, model)
    lerf = grad_cam_road.ROADLeastRelevantFirstAverage()(images, cams, targets, model)
    combined = grad_cam_road.ROADCombined()(images, cams, targets, model)
    assert (ours["road_morf"] - original - torch.from_numpy(morf)).abs().max() < TOLERANCE
    assert (ours["road_lerf"] - original - torch.from_numpy(lerf)).abs().max() < TOLERANCE
    assert (ours["road"] - torch.from_numpy(combined)).abs().max() < TOLERANCE
    assert ours["ad"].isfinite().all()  # the engine's own metrics alongside


def test_deterministic_and_independent_of_batching(model: nn.Module) -> None:
    images, maps = images_and_maps(4, (24, 24), seed=4)
    maps = maps[:, ::4, ::4].contiguous()  # native 6x6 maps, upsampled by the metric
    names = ["road_morf", "road_lerf", "road"]
    whole = faithfulness(model, images, maps, metrics=names)
    again = faithfulness(model, images, maps, metrics=names)
    split = faithfulness(model, images, maps, metrics=names, batch_size=5, images_per_group=3)
    alone = faithfulness(model, images[2:3], maps[2:3], metrics=["road"])
    for name in names:
        assert torch.equal(whole[name], again[name])
        assert torch.allclose(whole[name], split[name], atol=1e-5)
    assert torch.allclose(alone["road"], whole["road"][2:3], atol=1e-5)

    metric = ROADMoRF()  # the torchmetrics interface: the same values
    metric.update(model, images[:2], maps[:2])
    metric.update(model, images[2:], maps[2:])
    assert torch.allclose(metric.compute(), whole["road_morf"].mean(), atol=1e-6)

    class OtherSeed(ROADMoRF):
        seed = 1

    other = OtherSeed.values(metric_inputs(model, images, maps))
    assert not torch.allclose(other, whole["road_morf"], atol=1e-6)


def test_ties_follow_the_engines_order(model: nn.Module) -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    inputs = metric_inputs(model, images, torch.ones(2, 8, 8))
    raster = replace(inputs, config=FaithfulnessConfig(tie_break="raster"))
    assert torch.equal(pixel_ranks(raster), torch.arange(64).expand(2, 64))
    ranks = pixel_ranks(inputs)  # seeded random order, the same for every image
    assert torch.equal(ranks[0], ranks[1]) and not torch.equal(ranks[0], torch.arange(64))


def test_declarations_and_options() -> None:
    assert {"road_morf", "road_lerf", "road"} <= set(list_metrics())
    assert [higher_is_better(n) for n in ("road_morf", "road_lerf", "road")] == [False, True, True]
    assert [metric_group(n) for n in ("road_morf", "road_lerf", "road")] == ["mask", "highlight", None]
    default, fewer = FaithfulnessConfig(), FaithfulnessConfig(road_percentiles=[25, 50, 75])
    assert [metric_class(n).forwards(default) for n in ("road_morf", "road_lerf", "road")] == [9, 9, 18]
    assert [metric_class(n).forwards(fewer) for n in ("road_morf", "road_lerf", "road")] == [3, 3, 6]

    class Road5(ROADMoRF):  # a user's option: one more percentile set (registered, it is one more metric)
        metric_name, label, percentiles = "road5", "ROAD@5", (5,)

    assert Road5.forwards(default) == 1 and Road5.group == "mask"
    with pytest.raises(ValueError, match="road_percentiles"):
        FaithfulnessConfig(road_percentiles=[0, 50])


def test_bad_input(model: nn.Module) -> None:
    images, maps = images_and_maps(2, (16, 16))
    with pytest.raises(ValueError, match="percentiles"):
        road_scores(metric_inputs(model, images, maps), "morf", (0, 50))
    with pytest.raises(ValueError, match="every pixel"):
        noisy_linear_impute(images, torch.ones(2, 16, 16, dtype=torch.bool))
    with pytest.warns(RuntimeWarning, match="estimated error"):  # not converged: said, not silent
        noisy_linear_impute(images, maps > 0.2, max_iterations=1)
