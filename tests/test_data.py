"""Reader, summary, splits and DataModule on a tiny data set with every known quirk."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from embryo_xai.data import summary
from embryo_xai.data.datamodule import EmbryoDataModule, split_videos, subsample_frames
from embryo_xai.data.reader import DatasetFormatError, read_phases, scan_dataset
from embryo_xai.data.stages import PHASES, STAGES


def test_stages_are_the_16_in_order():
    assert len(PHASES) == len(STAGES) == 16
    assert PHASES[0] == "tPB2" and STAGES[0] == "sPB2" and STAGES[10] == "s9+" and STAGES[-1] == "sHB"


def test_reader_handles_every_quirk(tiny_dataset):
    root, info = tiny_dataset
    index = scan_dataset(root)
    assert len(index.frames) == info["expected_frames"]
    # duplicate F0/ sub-folder: frames of video 1 are not counted twice
    video1 = [f for f in index.frames if f.video == info["videos"][1]]
    assert len(video1) == len({f.run for f in video1})
    assert all("/F0/" not in str(f.path) for f in video1)
    # truncated JPEG skipped and counted
    assert [s["path"] for s in index.skipped_files] == [str(info["truncated"])]
    assert "truncated" in index.skipped_files[0]["reason"]
    # video without annotations skipped with its reason
    assert index.skipped_videos == [{"video": info["no_annotation"], "reason": f"no annotation file "
                                     f"{info['no_annotation']}_phases.csv"}]
    # annotations naming missing frames are ignored (and counted)
    assert index.missing_annotated_frames == 2
    # RUN 1 is outside every phase: unlabelled, dropped
    assert all(f.run >= 2 for f in index.frames)
    assert index.unlabelled_frames == len(info["videos"]) * 3 - 2  # RUN 1 + RUNs 17-18 per video


def test_labels_follow_run_numbers_not_listing_order(tiny_dataset):
    root, info = tiny_dataset
    index = scan_dataset(root)
    name = info["videos"][3]
    rows = read_phases(root / "embryo_dataset_annotations" / f"{name}_phases.csv")
    expected = {run: label for label, a, b in rows for run in range(a, b + 1)}
    frames = {f.run: f.label for f in index.frames if f.video == name}
    assert frames == {run: expected[run] for run in frames}
    # RUN10 sorts lexically before RUN2: a listing-order labeller would get this wrong
    assert frames[10] == expected[10] and frames[2] == expected[2]


@pytest.mark.parametrize("content, message", [
    ("tPB2,1\n", "expected 'phase,first_frame,last_frame'"),
    ("tXX,1,2\n", "unknown phase"),
    ("tPB2,a,2\n", "must be integers"),
    ("tPB2,5,2\n", "invalid frame range"),
    ("tPNa,1,4\ntPB2,5,6\n", "out of order"),
    ("tPB2,1,4\ntPNa,4,6\n", "overlaps"),
])
def test_malformed_phases_csv_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "video_phases.csv"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=message) as error:
        read_phases(path)
    line = content.count("\n")
    assert f"{path}:{line}" in str(error.value)


def test_empty_or_missing_root_says_how_to_generate(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        (tmp_path / "embryo_dataset").mkdir(exist_ok=True) if root == tmp_path else None
        with pytest.raises(FileNotFoundError, match="python -m embryo_xai.data.synthetic"):
            scan_dataset(root)


def test_unknown_focal_plane(tiny_dataset):
    with pytest.raises(ValueError, match="F-45"):
        scan_dataset(tiny_dataset[0], focal_plane="F99")


def test_other_focal_plane_is_read(tiny_dataset, tmp_path):
    root, info = tiny_dataset
    copy = tmp_path / "copy"
    shutil.copytree(root / "embryo_dataset_annotations", copy / "embryo_dataset_annotations")
    shutil.copytree(root / "embryo_dataset", copy / "embryo_dataset_F15")
    shutil.copytree(root / "embryo_dataset", copy / "embryo_dataset")
    assert len(scan_dataset(copy, "F15").frames) == info["expected_frames"]


def test_summary_cli_prints_json(tiny_dataset, capsys):
    root, info = tiny_dataset
    assert summary.main(["--root", str(root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["videos"] == len(info["videos"])
    assert sum(result["labelled_frames_per_stage"].values()) == info["expected_frames"]
    assert list(result["labelled_frames_per_stage"]) == list(STAGES)
    assert len(result["skipped_files"]) == 1 and len(result["skipped_videos"]) == 1


def test_summary_cli_error_on_missing_root(tmp_path, capsys):
    assert summary.main(["--root", str(tmp_path / "nothing")]) == 2
    assert "embryo_xai.data.synthetic" in capsys.readouterr().err


def test_split_is_by_video_without_leakage():
    videos = [f"v{i}" for i in range(40)]
    splits = split_videos(videos, test_fraction=0.5, val_fraction=0.1, seed=3)
    assert len(splits["test"]) == 20 and len(splits["val"]) == 2 and len(splits["train"]) == 18
    assert set(splits["train"]).isdisjoint(splits["val"]) and set(splits["train"]).isdisjoint(splits["test"])
    assert set(splits["val"]).isdisjoint(splits["test"])
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(videos)
    assert splits == split_videos(list(reversed(videos)), 0.5, 0.1, seed=3)  # order-independent
    with pytest.raises(ValueError, match="fractions"):
        split_videos(videos, 1.5, 0.1, 0)


def test_subsample_keeps_one_frame_in_three_per_video(tiny_dataset):
    index = scan_dataset(tiny_dataset[0])
    kept = subsample_frames(index.frames, 3)
    for video in index.videos:
        runs = sorted(f.run for f in index.frames if f.video == video)
        assert [f.run for f in kept if f.video == video] == runs[::3]


def test_datamodule_batches(tiny_dataset):
    root, info = tiny_dataset
    dm = EmbryoDataModule(root=str(root), generate_if_missing=False, crop_size=32, batch_size=4,
                          num_workers=0, frame_step=1, val_fraction=0.2)
    dm.setup()
    splits = {s: {dm.videos[i] for i in {int(b) for b in
              torch.tensor([dm.datasets[s].video_to_idx[f.video] for f in dm.datasets[s].frames])}}
              for s in ("train", "val", "test")}
    assert splits["train"].isdisjoint(splits["test"]) and splits["val"].isdisjoint(splits["test"])
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert torch.equal(batch["image"][:, 0], batch["image"][:, 2])  # grayscale repeated
    assert {"label", "video_idx", "run", "index"} <= set(batch)
    test_batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    again = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert torch.equal(test_batch["image"], again["image"])  # centre crop is deterministic
    counts = dm.class_counts()
    assert sum(sum(c.values()) for c in counts.values()) == info["expected_frames"]


def test_datamodule_rejects_crop_larger_than_frame(tiny_dataset):
    dm = EmbryoDataModule(root=str(tiny_dataset[0]), generate_if_missing=False, crop_size=600, num_workers=0)
    with pytest.raises(ValueError, match="crop_size"):
        dm.setup()
