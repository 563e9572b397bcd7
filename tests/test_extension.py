"""A new explainer and a new metric are one class each (plus a config file): registered from this
test module, they run through the faithfulness entry point and come out in the report with their
labels and direction, with no change to the package."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn

from embryo_xai import faithfulness
from embryo_xai.explainers import Explainer, list_explainers, register_explainer
from embryo_xai.metrics import MetricInputs, SingleFaithfulnessMetric, list_metrics, register_metric
from embryo_xai.report import build_report
from tests.helpers import compose_config


class CentreBias(Explainer):
    """A toy method: a centred Gaussian, whatever the image (a prior, not an explanation)."""

    name = "toycentre"
    label = "Centre prior"
    uses_layer = False

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        side = 8
        axis = torch.linspace(-1, 1, side, device=images.device)
        bump = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / 0.5)
        return bump.expand(images.shape[0], side, side).clone()


class TopHalfDrop(SingleFaithfulnessMetric):
    """A toy metric: relative drop of the score with the top half of the map blacked out."""

    metric_name, label, higher_is_better, group = "tophalfdrop", "TopHalf", True, "mask"

    @staticmethod
    def values(inputs: MetricInputs) -> torch.Tensor:
        maps = nn.functional.interpolate(inputs.maps[:, None], size=inputs.images.shape[-2:], mode="nearest")
        keep = maps < maps.flatten(1).median(dim=1).values[:, None, None, None]
        drop = inputs.original_scores - inputs.scores(inputs.images * keep)
        return drop / inputs.original_scores


@pytest.fixture(scope="module")
def registered():
    """Register the toy classes as a user's module would (decorators at import), once per session."""
    if "toycentre" not in list_explainers():
        register_explainer(CentreBias)
    if "tophalfdrop" not in list_metrics():
        register_metric(TopHalfDrop)


def test_toy_explainer_and_metric_reach_the_report(registered, tiny_train_run, tmp_path: Path) -> None:
    method_dir = tmp_path / "conf" / "method"
    method_dir.mkdir(parents=True)
    (method_dir / "toycentre.yaml").write_text("name: toycentre\n")  # the method's one config file
    common = [f"train_run={tiny_train_run}", "n_images=4", "batch_size=2", "data.num_workers=0",
              "metrics.max_steps=4", "metrics.metrics=[dauc,ad,tophalfdrop]",
              f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    runs = tmp_path / "faithfulness"
    for method in ("am", "toycentre"):
        cfg = compose_config("faithfulness", [*common, f"method={method}"], tmp_path)
        cfg.paths.output_dir = str(runs / method)
        summary = faithfulness.run(cfg)
        assert summary["complete"] and set(summary["means"]) == {"dauc", "ad", "tophalfdrop"}

    report = tmp_path / "report"
    cfg = compose_config("report", [f"runs=[{runs}]", "bootstrap=50", "embedding.umap=false",
                                    "embedding.tsne_perplexity=2", "gallery.frames_per_stage=1"], tmp_path)
    text = build_report(cfg, report).read_text()
    table1 = pd.read_csv(report / "table1.csv")
    assert "TopHalf" in table1.columns and "Centre prior" in set(table1["Method"])
    assert table1["TopHalf"].notna().all()
    assert "Centre prior" in text and "TopHalf" in text
