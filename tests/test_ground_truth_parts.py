"""Issue 14's reusable parts on hand-computed cases: localisation metrics (parity with Quantus 0.6), the
control pseudo-explainers and the sanity checks (randomisation cascade, random logit)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from embryo_xai.explainers import create_explainer, explainer_class
from embryo_xai.explainers.controls import sobel_magnitude
from embryo_xai.metrics.localisation import (
    LOCALISATION_METRICS,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roc_auc,
)
from embryo_xai.models import create_model
from embryo_xai.sanity import (
    flag_insensitive,
    measured_steps,
    parameter_randomisation,
    random_logit,
    randomisation_blocks,
)


def test_localisation_on_a_hand_computed_case() -> None:
    # 2x2 map, mask = the top row: saliency 4 and 1 inside, 3 and 2 outside
    maps = torch.tensor([[[4.0, 1.0], [3.0, 2.0]]])
    mask = torch.tensor([[[True, True], [False, False]]])
    assert pointing_game(maps, mask, "nearest").item() == 1.0
    assert relevance_mass_accuracy(maps, mask, "nearest").item() == pytest.approx(5 / 10)
    assert relevance_rank_accuracy(maps, mask, "nearest").item() == 0.5  # top-2 = {4, 3}: one inside
    assert roc_auc(maps, mask, "nearest").item() == pytest.approx(0.5)  # pairs (4>3, 4>2, 1<3, 1<2): 2 of 4
    assert pointing_game(maps, ~mask, "nearest").item() == 0.0
    empty = torch.zeros_like(mask)
    assert all(torch.isnan(f(maps, empty, "nearest")).all() for f, _, _ in LOCALISATION_METRICS.values())
    assert torch.isnan(roc_auc(maps, torch.ones_like(mask), "nearest")).all()  # no negatives


def test_localisation_upsamples_maps_to_the_mask() -> None:
    maps = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True
    assert relevance_mass_accuracy(maps, mask, "nearest").item() == 1.0
    assert 0.5 < relevance_mass_accuracy(maps, mask, "bilinear").item() < 1.0


def test_localisation_matches_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    maps = torch.tensor(rng.random((8, 12, 12)), dtype=torch.float32)  # untied: rank order is defined
    masks = torch.tensor(rng.random((8, 12, 12)) < 0.3)
    a, s = maps.numpy()[:, None], masks.numpy()[:, None].astype(float)
    theirs = {"pointing_game": quantus.PointingGame, "relevance_mass_accuracy": quantus.RelevanceMassAccuracy,
              "relevance_rank_accuracy": quantus.RelevanceRankAccuracy, "roc_auc": quantus.AUC}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (function, _, _) in LOCALISATION_METRICS.items():
            reference = theirs[name](disable_warnings=True).evaluate_batch(a_batch=a, s_batch=s, x_batch=a,
                                                                            y_batch=None, model=None)
            np.testing.assert_allclose(function(maps, masks, "nearest").numpy(), np.asarray(reference, float),
                                       atol=1e-6, err_msg=name)
    # ties in the maximum: a hit when any maximal pixel is in the mask (as Quantus)
    tied = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert pointing_game(tied, torch.tensor([[[False, True], [False, False]]]), "nearest").item() == 1.0


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn", backbone="resnet10t", pretrained=False).eval()


def test_controls_are_deterministic_per_image_and_flagged_as_controls() -> None:
    model, images = tiny_cnn(), torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in ("random", "gaussian", "sobel"):
        assert explainer_class(name).control and not explainer_class("gradcampp").control
        explainer = create_explainer(name)
        maps = explainer(model, images)
        assert maps.shape == (3, 2, 2)  # the target layer's size (64 px, stride 32)
        assert torch.equal(explainer(model, images[1:2])[0], maps[1])  # independent of the batch
    random = create_explainer("random", map_size=6)(model, images)
    assert random.shape == (3, 6, 6) and not torch.equal(random[0], random[1])
    assert not torch.equal(random, create_explainer("random", seed=1, map_size=6)(model, images))
    centre = create_explainer("gaussian", map_size=5)(model, images)[0]
    assert centre.argmax() == 12 and torch.allclose(centre, centre.flip(0)) and torch.allclose(centre, centre.T)


def test_sobel_responds_to_an_edge_only() -> None:
    images = torch.zeros(1, 3, 16, 16)
    images[..., 8:] = 1.0  # a vertical edge between columns 7 and 8
    magnitude = sobel_magnitude(images)[0]
    assert magnitude[:, 7:9].min() > 0 and magnitude[:, :6].abs().max() == 0 and magnitude[:, 10:].max() == 0
    maps = create_explainer("sobel", map_size=[1, 4])(tiny_cnn(), images)[0, 0]
    assert maps[1] > 0 and maps[2] > 0 and maps[0] == 0 and maps[3] == 0


def test_cascade_runs_head_first_and_leaves_the_model_untouched() -> None:
    model = tiny_cnn()
    names = [name for name, _ in randomisation_blocks(model)]
    assert names == ["head", "backbone.layer4", "backbone.layer3", "backbone.layer2", "backbone.layer1",
                     "backbone.stem"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 3, 5, 7])
    gradient = parameter_randomisation(model, create_explainer("gradcam"), images, targets)
    assert [n for n, _ in gradient] == names
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # a gradient method's maps move away from the original ones as layers are randomised ...
    assert float(gradient[-1][1].nanmedian()) < 0.9
    # ... an explainer that ignores the model keeps similarity 1 and is flagged
    edges = parameter_randomisation(model, create_explainer("sobel", map_size=8), images, targets)
    assert all(torch.allclose(similarity, torch.ones(4)) for _, similarity in edges)
    assert flag_insensitive(edges[-1][1]) and not flag_insensitive(torch.tensor([0.1, 0.2, float("nan")]))


def test_measured_steps_end_with_the_fully_randomised_model() -> None:
    assert measured_steps(6, None) == list(range(6)) and measured_steps(6, 9) == list(range(6))
    assert measured_steps(6, 3) == [0, 2, 5] and measured_steps(6, 1) == [5]
    model, images = tiny_cnn(), torch.rand(2, 3, 64, 64)
    steps = parameter_randomisation(model, create_explainer("sobel", map_size=4), images, torch.tensor([0, 1]),
                                    steps=2)
    assert [name for name, _ in steps] == ["head", "backbone.stem"]


def test_random_logit_separates_class_sensitive_methods() -> None:
    model = tiny_cnn()
    images = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 3])
    am = random_logit(model, create_explainer("am"), images, targets)
    assert torch.allclose(am, torch.ones(4))  # AM ignores the class

    def class_rolled(model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """A class-sensitive stand-in: a ramp rolled by the class (16 classes, 16 distinct maps)."""
        return torch.stack([torch.arange(16.0).roll(int(c)).view(4, 4) for c in classes])

    similarity = random_logit(model, class_rolled, images, targets, seed=3)
    assert (similarity < 0.99).all()
    assert torch.equal(similarity, random_logit(model, class_rolled, images, targets, seed=3))  # seeded
