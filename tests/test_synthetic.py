"""Synthetic generator: real on-disk layout, determinism, focal planes, quirks, and no global-statistics
shortcut to the stage."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embryo_xai.data.layout import FOCAL_PLANES
from embryo_xai.data.stages import NUM_CLASSES, PHASE_TO_LABEL, PHASES
from embryo_xai.data.synthetic import MASK_CODES, STAGE_MASK_STRUCTURES, generate_dataset

VIDEO_NAME = re.compile(r"^D\d{4}\.\d{2}\.\d{2}_S\d{4}_I\d{3}_WELL\d{1,2}$")
FRAME_NAME = re.compile(r"^(?P<video>.+)_RUN(?P<run>\d+)\.jpeg$")


def read_phases(path: Path) -> list[tuple[str, int, int]]:
    with open(path, newline="") as handle:
        return [(phase, int(first), int(last)) for phase, first, last in csv.reader(handle)]


def frame_runs(folder: Path) -> list[int]:
    runs = []
    for frame in folder.glob("*.jpeg"):
        match = FRAME_NAME.match(frame.name)
        assert match and match["video"] == folder.name, frame.name
        runs.append(int(match["run"]))
    return sorted(runs)


def labelled_frames(root: Path) -> list[tuple[str, int, int]]:
    """(video, RUN, label) of every frame that the phases CSV labels."""
    rows = []
    for video_dir in sorted((root / "embryo_dataset").iterdir()):
        for phase, first, last in read_phases(root / "embryo_dataset_annotations" / f"{video_dir.name}_phases.csv"):
            rows += [(video_dir.name, run, PHASE_TO_LABEL[phase]) for run in range(first, last + 1)]
    return rows


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 videos x 60 frames at 128 px, rendered by 2 worker processes."""
    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "set", videos=12, seed=0, size=128,
                            frames_per_video=60, workers=2, progress=False)


def test_layout_and_csv_formats(small_set: Path) -> None:
    videos = sorted(p.name for p in (small_set / "embryo_dataset").iterdir())
    assert len(videos) == 12 and all(VIDEO_NAME.match(v) for v in videos)
    assert sorted(p.name for p in small_set.iterdir()) == [
        "embryo_dataset", "embryo_dataset_annotations", "embryo_dataset_grades.csv", "embryo_dataset_masks",
        "embryo_dataset_time_elapsed", "synthetic.json"]  # the generator's record (counterfactual.py redraws from it)
    phases_per_video = []
    for video in videos:
        runs = frame_runs(small_set / "embryo_dataset" / video)
        assert runs == list(range(1, 61))  # RUN starts at 1, contiguous
        with Image.open(small_set / "embryo_dataset" / video / f"{video}_RUN1.jpeg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "L", (128, 128))

        text = (small_set / "embryo_dataset_annotations" / f"{video}_phases.csv").read_text()
        assert not text.startswith("phase")  # header-less
        rows = read_phases(small_set / "embryo_dataset_annotations" / f"{video}_phases.csv")
        labels = [PHASE_TO_LABEL[phase] for phase, _, _ in rows]
        assert labels == sorted(set(labels)), "phases in order, each once"
        bounds = [(first, last) for _, first, last in rows]
        assert all(1 <= first <= last <= 60 for first, last in bounds)
        assert all(prev_last < first for (_, prev_last), (first, _) in zip(bounds, bounds[1:]))
        phases_per_video.append(len(rows))

        with open(small_set / "embryo_dataset_time_elapsed" / f"{video}_timeElapsed.csv", newline="") as handle:
            table = list(csv.reader(handle))
        assert table[0] == ["frame_index", "time"]
        assert [int(r[0]) for r in table[1:]] == runs
        assert np.all(np.diff([float(r[1]) for r in table[1:]]) > 0)

        labelled = {run for _, first, last in rows for run in range(first, last + 1)}
        for run in runs:
            mask = np.asarray(Image.open(small_set / "embryo_dataset_masks" / video / f"{video}_RUN{run}.png"))
            assert mask.shape == (128, 128) and mask.dtype == np.uint8
            if run in labelled:
                assert mask.any(), f"{video} RUN{run}: empty mask on a labelled frame"
            assert set(np.unique(mask)) <= {0, *MASK_CODES.values()}
    assert max(phases_per_video) <= 15 and min(phases_per_video) >= 3
    with open(small_set / "embryo_dataset_grades.csv", newline="") as handle:
        grades = list(csv.DictReader(handle))
    assert sorted(g["video"] for g in grades) == videos and all(g["grade_icm"] in "ABC" for g in grades)


def test_masks_hold_the_stage_structures(small_set: Path) -> None:
    """A labelled frame's mask codes are exactly among the structures that define its stage."""
    for video, run, label in labelled_frames(small_set)[::7]:
        mask = np.asarray(Image.open(small_set / "embryo_dataset_masks" / video / f"{video}_RUN{run}.png"))
        allowed = {MASK_CODES[name] for name in STAGE_MASK_STRUCTURES[label]}
        assert set(np.unique(mask)) - {0} <= allowed, (video, run, PHASES[label])


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    kwargs = dict(videos=3, size=64, frames_per_video=6, progress=False)
    first = tree_bytes(generate_dataset(tmp_path / "a", seed=5, workers=1, **kwargs))
    second = tree_bytes(generate_dataset(tmp_path / "b", seed=5, workers=2, **kwargs))
    other = tree_bytes(generate_dataset(tmp_path / "c", seed=6, workers=1, **kwargs))
    assert first == second
    assert first.keys() != other.keys()  # other names
    first_frames = sorted(v for k, v in first.items() if k.endswith(".jpeg"))
    assert not set(first_frames) & {v for k, v in other.items() if k.endswith(".jpeg")}


def gradient_energy(image: np.ndarray) -> float:
    """Mean absolute gradient of the 2x2-block-averaged frame (averaging tames the sensor noise)."""
    image = image.astype(np.float32).reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).mean((1, 3))
    return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean())


def test_focal_planes_are_defocused_copies(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "planes", videos=1, seed=2, size=128, frames_per_video=4,
                            focal_planes="all", workers=1, progress=False)
    video = next((root / "embryo_dataset").iterdir()).name
    energy = {}
    for plane in FOCAL_PLANES:
        folder = root / ("embryo_dataset" if plane == "F0" else f"embryo_dataset_{plane}") / video
        assert frame_runs(folder) == [1, 2, 3, 4]
        energy[plane] = sum(gradient_energy(np.asarray(Image.open(f))) for f in folder.glob("*.jpeg"))
    assert energy["F45"] < energy["F15"] < energy["F0"]
    assert energy["F-45"] < energy["F-15"] < energy["F0"]
    with pytest.raises(ValueError, match="focal planes"):
        generate_dataset(tmp_path / "bad", videos=1, seed=2, focal_planes=("F0", "F60"), progress=False)


def test_quirks_are_injected_and_recorded(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "quirky", videos=5, seed=3, size=64, frames_per_video=16,
                            quirks=True, workers=1, progress=False)
    quirks = json.loads((root / "quirks.json").read_text())
    assert sorted(quirks) == ["duplicate_f0_dir", "missing_annotations", "missing_frames", "truncated_jpeg"]
    touched = [quirks[key][0]["video"] for key in quirks]
    assert len(set(touched)) == 4, "one quirk per video"

    truncated = root / quirks["truncated_jpeg"][0]["path"]
    with pytest.raises(OSError), Image.open(truncated) as image:
        image.load()

    duplicate = quirks["duplicate_f0_dir"][0]
    video_dir = root / "embryo_dataset" / duplicate["video"]
    copies = sorted(p.name for p in (video_dir / "F0").iterdir())
    assert copies == sorted(p.name for p in video_dir.glob("*.jpeg")) and len(copies) == duplicate["frames"]
    assert all((video_dir / "F0" / name).read_bytes() == (video_dir / name).read_bytes() for name in copies)

    missing = quirks["missing_frames"][0]
    rows = read_phases(root / "embryo_dataset_annotations" / f"{missing['video']}_phases.csv")
    annotated = {run for _, first, last in rows for run in range(first, last + 1)}
    on_disk = set(frame_runs(root / "embryo_dataset" / missing["video"]))
    assert missing["runs"] and set(missing["runs"]) <= annotated - on_disk

    unannotated = quirks["missing_annotations"][0]["video"]
    assert not (root / "embryo_dataset_annotations" / f"{unannotated}_phases.csv").exists()
    assert frame_runs(root / "embryo_dataset" / unannotated)


def global_statistics(image: np.ndarray) -> np.ndarray:
    """What a shortcut would use: mean, std and a 16-bin intensity histogram of the whole frame."""
    histogram = np.histogram(image, bins=16, range=(0, 256))[0] / image.size
    return np.concatenate([[image.mean() / 255, image.std() / 255], histogram])


def mask_areas(mask: np.ndarray) -> np.ndarray:
    """Positive control: the area of each stage-defining structure."""
    return np.bincount(mask.ravel(), minlength=max(MASK_CODES.values()) + 1)[1:] / mask.size


def test_stage_is_not_readable_from_global_statistics(small_set: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frames = labelled_frames(small_set)
    videos = np.array([video for video, _, _ in frames])
    labels = np.array([label for _, _, label in frames])
    stats = np.stack([global_statistics(np.asarray(Image.open(
        small_set / "embryo_dataset" / video / f"{video}_RUN{run}.jpeg"))) for video, run, _ in frames])
    areas = np.stack([mask_areas(np.asarray(Image.open(
        small_set / "embryo_dataset_masks" / video / f"{video}_RUN{run}.png"))) for video, run, _ in frames])

    folds = GroupKFold(n_splits=3)  # split by video: no video on both sides
    classifiers = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "forest": RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=0, n_jobs=1),
    }
    accuracy = {name: float((cross_val_predict(model, stats, labels, groups=videos, cv=folds) == labels).mean())
                for name, model in classifiers.items()}
    control = float((cross_val_predict(classifiers["forest"], areas, labels, groups=videos, cv=folds)
                     == labels).mean())
    majority = float(np.bincount(labels, minlength=NUM_CLASSES).max() / len(labels))
    print(f"\nglobal-statistics accuracy {accuracy}, majority rate {majority:.3f}, "
          f"mask-area control {control:.3f}, {len(labels)} frames")
    assert max(accuracy.values()) < 0.45
    assert control > max(accuracy.values()) + 0.15, "the split/labels carry stage information"
