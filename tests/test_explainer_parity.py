"""Every explainer's DEFAULT follows its paper, built exactly from ``conf/method/<name>.yaml``.

The CAMs explain the class logit: with default configs they equal pytorch-grad-cam with its own
defaults (Pearson >= 0.99) on a model whose logits are far apart, where a probability-vs-logit slip
would show (each test also checks that the probability variant misses). Score-CAM's channel softmax
of logits is not AM; its authors' released variant (raw probabilities) equals a hand computation.
RISE keeps the probability and renders its map at the CNN's feature-map resolution.

The model is our CNN on timm's resnet10t at 32 px, output stride 8 (4x4 layer4 maps): small enough
that pytorch-grad-cam's Score-CAM and Ablation-CAM, one full forward per channel, stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from embryo_xai.explainers import create_explainer
from embryo_xai.explainers.base import Explainer
from embryo_xai.models import create_model
from tests.helpers import map_pearson as pearson

SIZE = 32
HEAD_SCALE = 50.0
MIN_LOGIT_GAP = 5.0  # top-1 probability > 0.99: probability gradients and scores differ from the logit's
METHOD_CONF = Path(__file__).parents[1] / "conf" / "method"


def yaml_explainer(name: str, **overrides) -> Explainer:
    """The explainer exactly as ``method=<name>`` builds it (its yaml file), plus explicit overrides."""
    cfg = yaml.safe_load((METHOD_CONF / f"{name}.yaml").read_text())
    return create_explainer(**{**cfg, **overrides})


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """Random CNN with a trained net's traits: every residual branch on (timm zero-inits the last BN
    of each block, which leaves only shortcuts: all channels alike), BN statistics from real-range
    inputs, and a head scaled so the softmax is peaked."""
    torch.manual_seed(0)
    model = create_model("cnn", backbone="resnet10t", output_stride=8)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            module.momentum = None  # cumulative average: one pass sets the running statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)))
        model.head.fc.weight.mul_(HEAD_SCALE)
    return model.eval()


def logit_gap(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        top = model(images).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


@pytest.fixture(scope="module")
def images(model) -> torch.Tensor:
    """The two images (of eight random ones) with the largest top-2 logit gap."""
    candidates = torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return candidates[logit_gap(model, candidates).argsort(descending=True)[:2]]


@pytest.fixture(scope="module")
def explain(model, images) -> Callable[..., torch.Tensor]:
    """Maps of ``images`` by ``yaml_explainer(name, **overrides)``, computed once per module: Score-CAM
    runs one forward per channel, and several tests compare the same maps."""
    cache: dict[tuple, torch.Tensor] = {}

    def maps(name: str, **overrides) -> torch.Tensor:
        key = (name, *sorted(overrides.items()))
        if key not in cache:
            cache[key] = yaml_explainer(name, **overrides)(model, images)
        return cache[key]

    return maps


def test_logits_are_far_apart(model, images):
    assert (logit_gap(model, images) >= MIN_LOGIT_GAP).all(), logit_gap(model, images)
    with torch.no_grad():
        assert (model(images).softmax(dim=1).amax(dim=1) > 0.99).all()


@pytest.mark.parametrize("name", ["gradcam", "gradcampp", "scorecam", "ablationcam"])
def test_defaults_match_pytorch_grad_cam_defaults(name, model, images, explain):
    """Our yaml defaults against pytorch-grad-cam called with its defaults (``targets=None``: the
    predicted class's raw logit) at native resolution; the probability variant must miss."""
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    ours = explain(name)
    reference = {"gradcam": grad_cam.GradCAM, "gradcampp": grad_cam.GradCAMPlusPlus, "scorecam": grad_cam.ScoreCAM,
                 "ablationcam": grad_cam.AblationCAM}[name](model=model, target_layers=[model.backbone.layer4])
    reference.batch_size = 128
    # grad-cam resizes its maps to the input; asking for the native size keeps them as computed
    reference.get_target_width_height = lambda input_tensor: (ours.shape[2], ours.shape[1])
    theirs = torch.from_numpy(reference(images, None))
    assert theirs.shape == ours.shape == (len(images), 4, 4) and (ours.flatten(1).std(1) > 0).all()
    assert (pearson(ours, theirs) >= 0.99).all(), pearson(ours, theirs)
    with_prob = explain(name, score="prob")
    assert (pearson(with_prob, theirs) < 0.99).any(), pearson(with_prob, theirs)


def test_scorecam_default_is_not_am(explain):
    """A channel softmax of probabilities (all in [0, 1]) is nearly uniform: the map is AM. The
    default softmax of logits is not."""
    am = explain("am")
    default = pearson(explain("scorecam"), am)
    softmax_of_probs = pearson(explain("scorecam", score="prob"), am)
    assert (softmax_of_probs > 0.99).all(), softmax_of_probs
    assert (default < softmax_of_probs - 0.2).all(), (default, softmax_of_probs)


def test_scorecam_raw_weighting_is_the_authors_computation(model, images, explain):
    """``weighting=raw`` (score defaults to prob): the authors' released loop, vectorised — each
    non-constant channel, upsampled and min-max normalised, masks the input; its weight is the
    masked input's class probability as is; constant channels weigh 0."""
    image = images[:1]
    with torch.no_grad():
        target = model(image).argmax(dim=1)
        features = model.forward_features(image)[0]
        masks = F.interpolate(features[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=True)[:, 0]
        low, high = masks.amin(dim=(1, 2)), masks.amax(dim=(1, 2))
        varying = high > low
        masks = (masks[varying] - low[varying, None, None]) / (high - low)[varying, None, None]
        probs = model(image * masks[:, None]).softmax(dim=1)[:, target[0]]
        expected = torch.einsum("c,chw->hw", probs, features[varying]).clamp_min(0)[None]
    raw = yaml_explainer("scorecam", weighting="raw")
    assert raw.score == "probability"
    maps = raw(model, image)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().amax()))
    assert pearson(maps, explain("scorecam")[:1]) < 0.99


def test_scorecam_rejects_unknown_weighting():
    with pytest.raises(ValueError, match="weighting must be one of"):
        yaml_explainer("scorecam", weighting="softmin")


def test_rise_default_score_is_probability():
    assert yaml_explainer("rise").score == "probability" and create_explainer("rise").score == "probability"
    assert all(create_explainer(name).score == "logit" for name in ("gradcam", "gradcampp", "scorecam", "ablationcam"))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_rise_default_map_has_layer4_resolution(output_stride, images):
    """The default map is at the explained CNN's layer4 resolution (found from the model, not fixed);
    ``map_size=null`` is the input resolution, whose area average is the default map."""
    torch.manual_seed(0)
    cnn = create_model("cnn", backbone="resnet10t", output_stride=output_stride).eval()
    with torch.no_grad():
        feature_size = tuple(cnn.forward_features(images).shape[-2:])
    assert feature_size == (SIZE // output_stride,) * 2
    default = yaml_explainer("rise", num_masks=16)(cnn, images)
    full = yaml_explainer("rise", num_masks=16, map_size=None)(cnn, images)
    assert default.shape == (len(images), *feature_size) and full.shape == (len(images), SIZE, SIZE)
    torch.testing.assert_close(F.adaptive_avg_pool2d(full, feature_size), default)
    assert yaml_explainer("rise", num_masks=16, map_size=7)(cnn, images).shape == (len(images), 7, 7)


@pytest.mark.parametrize("bad", [0, "layer4", [4], [4, 0], 2.5])
def test_rise_rejects_bad_map_size(bad):
    with pytest.raises(ValueError, match="map_size must be"):
        create_explainer("rise", map_size=bad)
