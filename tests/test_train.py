"""Config composition, per-video accuracy, and end-to-end training with fast_dev_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from embryo_xai.errors import UsageError
from embryo_xai.models import create_model
from embryo_xai.models.accuracy import StageAccuracy, per_video_accuracy
from embryo_xai.train import train
from tests.helpers import REPO, compose_config


def group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "trainer", "callbacks", "logger", "experiment"])
def test_every_group_choice_composes(group, tmp_path):
    for choice in group_choices(group):
        cfg = compose_config("train", [f"{group}={choice}"], tmp_path)
        assert cfg.model.net.name and cfg.data._target_.endswith("EmbryoDataModule")


def test_per_video_accuracy_hand_made_example():
    # video 0: 3/4 right, video 1: 0/1, video 7: 2/2 -> (0.75 + 0 + 1) / 3, not 5/7 (frame accuracy)
    preds = torch.tensor([1, 1, 2, 3, 5, 4, 4])
    target = torch.tensor([1, 1, 2, 0, 6, 4, 4])
    video = torch.tensor([0, 0, 0, 0, 1, 7, 7])
    expected = (0.75 + 0.0 + 1.0) / 3
    assert per_video_accuracy(preds == target, video).item() == pytest.approx(expected)
    metric = StageAccuracy("video")
    metric.update(preds[:3], target[:3], video[:3])
    metric.update(preds[3:], target[3:], video[3:])  # a video spread over two batches
    assert metric.compute().item() == pytest.approx(expected)
    # a distributed sampler repeats frames to even out shards: counted once
    frames = torch.arange(7)
    padded = StageAccuracy("video")
    padded.update(preds, target, video, frames)
    padded.update(preds[:2], target[:2], video[:2], frames[:2])
    assert padded.compute().item() == pytest.approx(expected)
    per_frame = StageAccuracy("frame")
    per_frame.update(preds, target, video, frames)
    per_frame.update(preds[3:4], target[3:4], video[3:4], frames[3:4])
    assert per_frame.compute().item() == pytest.approx(5 / 7)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: .*cnn"):
        create_model("vit_giant")


def test_cnn_normalises_inside_and_gives_logits():
    model = create_model("cnn", backbone="resnet18").eval()
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, 16)
    assert model.forward_features(x).shape == (2, 512, 2, 2)


def tiny_overrides(root: Path) -> list[str]:
    return [
        f"data.root={root}", "data.generate_if_missing=false", "data.crop_size=32", "data.batch_size=4",
        "data.num_workers=0", "data.frame_step=1", "data.val_fraction=0.2", "model.net.backbone=resnet18",
        "trainer=cpu", "logger=csv", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
    ]


def test_fast_dev_run_trains_and_tests(tiny_dataset, tmp_path):
    cfg = compose_config("train", [*tiny_overrides(tiny_dataset[0]), "+trainer.fast_dev_run=true",
                         "callbacks=none"], tmp_path)
    metrics = train(cfg)
    assert "test/acc_video" in metrics and 0.0 <= metrics["test/acc_video"] <= 1.0


def test_best_checkpoint_is_restored_for_test(tiny_dataset, tmp_path):
    cfg = compose_config("train", tiny_overrides(tiny_dataset[0]) + ["+trainer.limit_train_batches=3"], tmp_path)
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "config.yaml").is_file()
    report = json.loads((run / "test_metrics.json").read_text())
    assert Path(report["best_ckpt"]) == best
    assert report["test/acc_video"] == pytest.approx(metrics["test/acc_video"])
    assert len(report["per_stage_acc"]) == 16
    assert (run / "test_predictions.csv").read_text().startswith("video,run,label,stage,prediction")
    # testing the best checkpoint again from disk gives the same accuracy
    test_cfg = compose_config("train", tiny_overrides(tiny_dataset[0]) + ["train=false", f"ckpt_path={best}"],
                             tmp_path / "again")
    again = train(test_cfg)
    assert again["test/acc_video"] == pytest.approx(metrics["test/acc_video"])
    # the checkpoint loads with weights_only=True: nothing executable in it
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["net"]["name"] == "cnn"


def test_test_only_without_checkpoint_is_refused(tiny_dataset, tmp_path):
    """train=false tests ckpt_path, or the latest finished run of the model: with neither, one clear error."""
    cfg = compose_config("train", tiny_overrides(tiny_dataset[0]) + ["train=false"], tmp_path)
    with pytest.raises(UsageError, match="ckpt_path=FILE.*no finished training run of model 'cnn'"):
        train(cfg)
