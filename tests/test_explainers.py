"""Explainers: shapes, definitions, parity with pytorch-grad-cam, bad input, batching and memory bounds.

The test model is our CNN on resnet18 at 32 px with output stride 8 (4x4 layer4 maps); most layer4
channels are switched off (as dead ReLU channels are in trained nets) so that per-channel methods
stay fast on two shared cores while every code path (skipped channels included) runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from embryo_xai.explainers import create_explainer, list_explainers
from embryo_xai.explainers.base import finalize_maps, weighted_channel_sum
from embryo_xai.models import create_model
from tests.helpers import map_pearson

ALIVE_CHANNELS = 40
SIZE = 32
LAYER_METHODS = ["am", "cam", "gradcam", "gradcampp", "scorecam", "ablationcam"]
POST_HOC = [*LAYER_METHODS, "rise"]
FAST_CFG = {"rise": {"num_masks": 32}}


def build_model(alive: int = ALIVE_CHANNELS, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("cnn", backbone="resnet18", output_stride=8).eval()
    with torch.no_grad():  # relu(bn2 + shortcut) of the last block: a very negative bias kills a channel
        model.backbone.layer4[-1].bn2.bias[alive:] = -1e4
    return model


def explain(name: str, model: nn.Module, images: torch.Tensor, targets=None, **cfg) -> torch.Tensor:
    return create_explainer(name, **{**FAST_CFG.get(name, {}), **cfg})(model, images, targets)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build_model()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- shapes and definitions
@pytest.mark.parametrize("name", POST_HOC)
def test_shapes_and_non_negativity(name, model, images):
    maps = explain(name, model, images[:2])
    assert maps.shape == (2, 4, 4)  # RISE too: the layer4 resolution by default
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert maps.abs().amax() > 0
    if name != "cam":  # CAM keeps negative evidence, as in the original
        assert (maps >= 0).all()


def test_am_is_channel_mean(model, images):
    expected = model.forward_features(images).mean(dim=1)
    torch.testing.assert_close(explain("am", model, images), expected)


def test_gradcam_on_logits_is_relu_cam_over_area(model, images):
    """For GAP + linear head, dlogit_c/dA = w_c / (h·w): Grad-CAM (logit by default) = relu(CAM) / (h·w)."""
    cam = explain("cam", model, images)
    gradcam = explain("gradcam", model, images)
    torch.testing.assert_close(gradcam, cam.clamp_min(0) / 16, rtol=1e-4, atol=1e-7)


def test_none_targets_mean_predicted_class(model, images):
    predicted = model(images).argmax(1)
    torch.testing.assert_close(explain("gradcampp", model, images),
                               explain("gradcampp", model, images, predicted))
    other = (predicted + 1) % 16
    assert not torch.allclose(explain("cam", model, images, other), explain("cam", model, images))


# ---------------------------------------------------------------- parity with pytorch-grad-cam
# Default configs against grad-cam's defaults (logit): tests/test_explainer_parity.py.
@pytest.mark.parametrize("score", ["logit", "prob"])
@pytest.mark.parametrize("name", ["gradcampp", "scorecam", "ablationcam"])
def test_parity_with_pytorch_grad_cam(name, score, model, images):
    """Either score option against grad-cam given the same explicit classes: Pearson >= 0.99 at
    native resolution.

    grad-cam resizes its maps to the input; asking it for the native size keeps them as computed
    (min-max normalised, which the correlation ignores). ``ClassifierOutputTarget`` is the logit
    convention (our default), ``ClassifierOutputSoftmaxTarget`` the probability option. grad-cam adds
    1e-6 to the Grad-CAM++ α denominator, matched here with ``eps``: our exact default (eps=0) differs
    wherever g² is not much larger than 1e-6 (probability gradients always, small logit gradients too).
    """
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    subset = images[:1] if name == "scorecam" else images  # grad-cam's Score-CAM runs every channel
    targets = model(subset).argmax(1)  # the explained class (docs/architecture.md, Conventions)
    matched = {"eps": 1e-6} if name == "gradcampp" else {}
    ours = explain(name, model, subset, targets, score=score, batch_size=64, **matched)
    reference_class = {"gradcampp": grad_cam.GradCAMPlusPlus, "scorecam": grad_cam.ScoreCAM,
                       "ablationcam": grad_cam.AblationCAM}[name]
    reference = reference_class(model=model, target_layers=[model.backbone.layer4])
    reference.batch_size = 64
    reference.get_target_width_height = lambda input_tensor: (ours.shape[2], ours.shape[1])
    target_class = ClassifierOutputTarget if score == "logit" else ClassifierOutputSoftmaxTarget
    theirs = torch.from_numpy(reference(subset, [target_class(int(c)) for c in targets]))
    assert theirs.shape == ours.shape and (ours.flatten(1).std(1) > 0).all()
    assert (map_pearson(ours, theirs) >= 0.99).all(), map_pearson(ours, theirs)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, message", [(1.5, r"\[0, 1\]"), (-0.1, r"\[0, 1\]"),
                                          (float("nan"), "NaN or inf"), (float("inf"), "NaN or inf")])
def test_bad_images_raise(bad, message, model, images):
    corrupted = images[:1].clone()
    corrupted[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=message):
        explain("gradcampp", model, corrupted)


def test_bad_shapes_and_targets_raise(model, images):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        explain("am", model, images[:, :1])
    with pytest.raises(ValueError, match=r"target classes must be in \[0, 16\)"):
        explain("ablationcam", model, images[:2], torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="integer class indices"):
        explain("am", model, images[:2], torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        explain("am", model, images[:2], torch.tensor([0]))


def test_unknown_layer_lists_candidates(model, images):
    with pytest.raises(ValueError, match="no layer named 'backbone.layer9'") as error:
        explain("gradcampp", model, images[:1], target_layer="backbone.layer9")
    assert "backbone.layer4" in str(error.value) and "backbone.layer3" in str(error.value)


def test_unknown_method_lists_methods():
    with pytest.raises(ValueError, match="unknown explainer 'gradcamx'") as error:
        create_explainer("gradcamx")
    assert all(name in str(error.value) for name in list_explainers())


def test_attention_needs_attention_model(model, images):
    with pytest.raises(ValueError, match="has no attention map") as error:
        explain("attention", model, images[:1])
    assert "gradcampp" in str(error.value) and "rise" in str(error.value)

    class Attentive(nn.Module):
        has_attention = True

        def forward(self, x):
            return x.mean(dim=(2, 3))

        def attention(self, x):
            return x[:, 0, ::4, ::4]

    maps = explain("attention", Attentive(), images)
    torch.testing.assert_close(maps, images[:, 0, ::4, ::4])


# ---------------------------------------------------------------- constant maps
def test_finalize_turns_constant_and_nan_maps_into_zeros():
    maps = torch.stack([torch.full((4, 4), 3.0), torch.full((4, 4), float("nan")), torch.eye(4)])
    out = finalize_maps(maps)
    assert torch.equal(out[:2], torch.zeros(2, 4, 4)) and torch.equal(out[2], torch.eye(4))


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_dead_layer_gives_zero_maps_not_nan(name, images):
    dead = build_model(alive=0)
    maps = explain(name, dead, images[:2])
    assert torch.equal(maps, torch.zeros_like(maps))


# ---------------------------------------------------------------- batching, chunking, paths
@pytest.mark.parametrize("name", POST_HOC)
def test_batch_equals_one_by_one(name, model, images):
    together = explain(name, model, images, batch_size=16)
    alone = torch.cat([explain(name, model, image[None], batch_size=7) for image in images])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5 * float(alone.abs().amax()))


@pytest.mark.parametrize("weighting", ["softmax", "raw"])
def test_scorecam_skipping_constant_channels_is_exact(weighting, model, images):
    """Dead (all-zero) channels: softmax still counts their black-image score, raw weighs them w·0 = 0."""
    skipped = explain("scorecam", model, images[:1], weighting=weighting)
    full = explain("scorecam", model, images[:1], weighting=weighting, skip_constant_channels=False,
                   batch_size=128)
    torch.testing.assert_close(skipped, full, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "rise"])
def test_no_forward_sees_more_than_batch_size(name, model, images):
    """Peak memory is bounded by batch_size: count the images every stem / head call receives."""
    seen: list[int] = []
    hooks = [module.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
             for module in (model.backbone.stem, model.head)]
    try:
        explain(name, model, images, batch_size=8)
    finally:
        for hook in hooks:
            hook.remove()
    assert max(seen) <= 8 and len(seen) > 4


@pytest.mark.parametrize("name", ["gradcampp", "scorecam", "ablationcam"])
def test_hook_path_matches_feature_split(name, model, images):
    """A model without forward_features/forward_head goes through hooks: same maps, slower."""
    wrapped = nn.Sequential(model)
    fast = explain(name, model, images[:2])
    hooked = explain(name, wrapped, images[:2], target_layer="0.backbone.layer4")
    torch.testing.assert_close(fast, hooked, rtol=1e-5, atol=1e-6)


def test_other_target_layer(model, images):
    maps = explain("ablationcam", model, images[:1], target_layer="backbone.layer3", batch_size=64)
    assert maps.shape == (1, 4, 4) and (maps >= 0).all()
    with pytest.raises(ValueError, match="CAM needs the layer"):
        explain("cam", model, images[:1], target_layer="backbone.layer3")


def test_inputs_made_in_inference_mode(model, images):
    with torch.inference_mode():
        frozen_images, frozen_targets = images[:2].clone(), model(images[:2]).argmax(1)
    torch.testing.assert_close(explain("gradcampp", model, frozen_images, frozen_targets),
                               explain("gradcampp", model, images[:2]))


def test_method_configs_build():
    """Every ``conf/method/*.yaml`` is a valid ``create_explainer(**cfg)`` call, one file per method."""
    import yaml

    configs = sorted(Path(__file__).parents[1].joinpath("conf", "method").glob("*.yaml"))
    names = [create_explainer(**yaml.safe_load(path.read_text())).name for path in configs]
    assert names == [path.stem for path in configs] and sorted(names) == list_explainers()


def test_model_mode_is_restored(model, images):
    model.train()
    try:
        maps = explain("gradcampp", model, images[:2])
        assert model.training
    finally:
        model.eval()
    torch.testing.assert_close(maps, explain("gradcampp", model, images[:2]))
    wrapped = nn.Sequential(model)  # a train-mode container around an eval-mode model stays so
    explain("am", wrapped, images[:1], target_layer="0.backbone.layer4")
    assert wrapped.training and not model.training


# ---------------------------------------------------------------- RISE
def test_rise_is_deterministic_by_seed(model, images):
    first = explain("rise", model, images[:2], seed=3, batch_size=16)
    again = explain("rise", model, images[:2], seed=3, batch_size=5)
    other = explain("rise", model, images[:2], seed=4, batch_size=16)
    torch.testing.assert_close(first, again, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(first, other)


def test_rise_masks_and_full_resolution(model, images):
    rise = create_explainer("rise", num_masks=500, seed=0)
    upsampled, shifts = rise.draw_masks((SIZE, SIZE), torch.device("cpu"))
    masks = rise.crop(upsampled, shifts, (SIZE, SIZE))
    assert masks.shape == (500, SIZE, SIZE) and masks.min() >= 0 and masks.max() <= 1
    assert abs(float(masks.mean()) - 0.5) < 0.03
    assert shifts.min() >= 0 and shifts.max() < 5 and len(shifts.unique()) == 5  # cell = ceil(32 / 7)
    full = explain("rise", model, images[:1], map_size=None)
    pooled = explain("rise", model, images[:1])  # default: layer4's 4x4
    assert full.shape == (1, SIZE, SIZE) and pooled.shape == (1, 4, 4)
    torch.testing.assert_close(torch.nn.functional.adaptive_avg_pool2d(full, 4), pooled)
    grid_sized = explain("rise", model, images[:1], map_size=7)
    torch.testing.assert_close(torch.nn.functional.adaptive_avg_pool2d(full, 7), grid_sized)


@pytest.mark.parametrize("name", POST_HOC)
def test_bf16_autocast_keeps_maps_float32_and_close(name, model, images):
    """Under bf16 autocast only the forward passes drop precision: maps come out float32 (a bf16 map
    would tie pixels the metrics rank) and stay close to the float32 maps."""
    reference = explain(name, model, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = explain(name, model, images)
    assert maps.dtype == torch.float32 and maps.shape == reference.shape
    assert bool((map_pearson(maps, reference) > 0.9).all()), map_pearson(maps, reference)


def test_weighted_channel_sum_is_float32_under_autocast():
    weights = torch.rand(2, 8)
    features = torch.rand(2, 8, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = weighted_channel_sum(weights, features)
    assert maps.dtype == torch.float32
    torch.testing.assert_close(maps, torch.einsum("bc,bchw->bhw", weights, features))
