"""Parity with the paper authors' package ``saliency-maps-metrics`` (test-only dependency).

With ``package_config()`` (its conventions: raw curves, step abscissa, fixed-size groups,
ties in raster order, bicubic ``upsamp(norm(S))``, unclipped ADD) our seven metrics match its values to 1e-4.
Its IIC/AD/ADD normalise maps over the whole batch, so it is called one image at a time
(per-image maps, as the paper defines); its Insertion gets the predicted classes explicitly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from embryo_xai.metrics import faithfulness, package_config
from embryo_xai.metrics.perturb import substrate
from embryo_xai.models import create_model

smm_multi = pytest.importorskip("saliency_maps_metrics.multi_step_metrics")
smm_single = pytest.importorskip("saliency_maps_metrics.single_step_metrics")
smm_replace = pytest.importorskip("saliency_maps_metrics.data_replace")

TOLERANCE = 1e-4


class Probabilities(nn.Module):
    """The package expects a model that outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(dim=1)


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package calls np.trapz, removed in NumPy 2.4.
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = create_model("cnn", backbone="resnet18").eval()
    with torch.no_grad():  # sharper random classifier so the curves move visibly
        net.head.fc.weight.mul_(20)
    return net


def package_values(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                   max_steps: int) -> dict[str, np.ndarray]:
    """Per-image values from the package's own functions."""
    prob_model = Probabilities(model)
    explanations = maps.unsqueeze(1)
    values: dict[str, np.ndarray] = {}
    for metric in (smm_multi.Deletion(max_step_nb=max_steps, batch_size=64),
                   smm_multi.Insertion(max_step_nb=max_steps, batch_size=64)):
        scores, saliency = metric.compute_scores(prob_model, images, explanations, targets)
        auc_name, corr_name = metric.make_result_dic("auc", "corr")
        values[auc_name] = smm_multi.compute_auc_metric(scores)
        values[corr_name] = metric.compute_calibration_metric(scores, saliency)
    rows = []
    for i in range(len(images)):  # one image per call: per-image min-max normalisation
        one = (prob_model, images[i:i + 1], explanations[i:i + 1], targets[i:i + 1])
        row = smm_single.IIC_AD().compute_metric(*smm_single.IIC_AD().compute_scores(*one))
        row.update(smm_single.ADD().compute_metric(*smm_single.ADD().compute_scores(*one)))
        rows.append(row)
    for name in ("iic", "ad", "add"):
        values[name] = np.concatenate([row[name] for row in rows])
    return values


@pytest.mark.parametrize(
    ("image_size", "map_size", "max_steps"),
    [
        (56, 7, 196),  # one block per step
        (56, 14, 49),  # grouped: 196 blocks in 49 steps of 4
        (112, 14, 28),  # 8x8-pixel blocks grouped 7 per step
        (60, 8, 196),  # map size does not divide the image: nearest-upsampling blocks
    ],
)
def test_parity_with_saliency_maps_metrics(model: nn.Module, image_size: int, map_size: int,
                                           max_steps: int) -> None:
    generator = torch.Generator().manual_seed(image_size * 100 + map_size)
    images = torch.rand(2, 3, image_size, image_size, generator=generator)
    maps = torch.rand(2, map_size, map_size, generator=generator)
    with torch.no_grad():
        targets = model(images).argmax(dim=1)

    ours = faithfulness(model, images, maps, **vars(package_config(max_steps=max_steps)))
    theirs = package_values(model, images, maps, targets, max_steps)

    assert ours.valid.all()
    for name, expected in theirs.items():
        np.testing.assert_allclose(ours[name].numpy(), expected, atol=TOLERANCE, rtol=0, err_msg=name)
    # the curves really move, so the comparison is not between flat constants
    assert np.ptp(theirs["dc"]) > 0 or np.ptp(theirs["dauc"]) > 1e-3


def test_paper_defaults_differ_from_package_where_documented(model: nn.Module) -> None:
    """Normalising the curve by its max (paper) changes DAUC: the option is not a no-op."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 56, 56, generator=generator)
    maps = torch.rand(2, 7, 7, generator=generator)
    package = faithfulness(model, images, maps, metrics=("dauc", "dc"), **vars(package_config()))
    paper = faithfulness(model, images, maps, metrics=("dauc", "dc"))
    assert (paper["dauc"] > package["dauc"]).all()  # dividing by max c_k <= 1 raises the curve
    torch.testing.assert_close(paper["dc"], package["dc"], atol=1e-5, rtol=0)  # correlation: scale-free


def test_box_blur_matches_package() -> None:
    images = torch.rand(2, 3, 50, 50, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(substrate(images, "blur", package_config()), smm_replace.blur_data(images),
                               atol=1e-6, rtol=0)
