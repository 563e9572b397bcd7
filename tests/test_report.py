"""`python -m embryo_xai.report` end to end on synthetic run dirs, a published table, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embryo_xai.analysis.gallery import gather_gallery
from embryo_xai.analysis.loading import ImageMismatchError, NoResultsError, find_runs, load_study
from embryo_xai.analysis.spec import METRICS
from embryo_xai.data.stages import STAGES
from embryo_xai.report import build_report
from embryo_xai.runs import FaithfulnessRun, TrainingRun
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[1]
PAPER_TABLE1 = REPO / "tests" / "data" / "paper_table1.csv"
N_IMAGES = 12
CROP = 56
VIDEOS = ["D2013.01.01_S0001_I132_WELL1", "D2013.01.02_S0002_I132_WELL2"]


def _images() -> pd.DataFrame:
    """Test frames: image_id, video, RUN, label; the gallery's stages in turn."""
    gallery_stages = [STAGES.index(s) for s in ("sPNa", "s4", "sB")]
    labels = [gallery_stages[i % 3] for i in range(N_IMAGES)]
    return pd.DataFrame(
        {
            "image_id": np.arange(N_IMAGES) * 7,  # not 0..N-1: ids are only stable keys
            "video": [VIDEOS[i % 2] for i in range(N_IMAGES)],
            "run": np.arange(N_IMAGES) + 10,
            "label": labels,
            "stage": [STAGES[label] for label in labels],
        }
    )


def write_faithfulness_run(
    run_dir: Path,
    model: str,
    method: str,
    seed: int,
    metrics: tuple[str, ...] = METRICS,
    n_images: int | None = None,
    complete: bool = True,
    map_size: int = 7,
    with_crops: bool = True,
) -> None:
    """A faithfulness run dir written through `FaithfulnessRun`, as the evaluator writes it."""
    rng = np.random.default_rng(seed)
    n_images = n_images or N_IMAGES
    run = FaithfulnessRun(run_dir)
    images = _images().iloc[:n_images]
    ckpt = run_dir.parent.parent / "train" / model / "checkpoints" / "best.ckpt"
    run.claim({"model": model, "method": method, "ckpt": str(ckpt), "data": {"crop_size": CROP}})
    values = {m: rng.integers(0, 2, n_images) if m == "iic" else rng.random(n_images) for m in metrics}
    if "dc" in metrics:
        values["dc"] = np.where(np.arange(n_images) != 1, values["dc"], np.nan)  # one undefined DC (constant map)
    scores = rng.random(n_images)
    run.append([(model, method, rec.image_id, rec.video, rec.run, rec.label, rec.stage, rec.label, scores[k], m,
                 values[m][k]) for m in metrics for k, rec in enumerate(images.itertuples(index=False))])
    maps = rng.random((n_images, map_size, map_size))
    yy, xx = np.mgrid[:CROP, :CROP] - CROP / 2
    frames = np.stack([np.where(np.hypot(yy, xx) < CROP * (0.25 + 0.01 * (k % 10)), 180, 40)  # an "embryo"
                       for k in range(n_images)])
    ids = images["image_id"].tolist()
    if with_crops:
        run.save_maps_part(ids, maps, frames)
    else:  # a run saved before crops were stored
        run.maps_parts.mkdir()
        np.savez(run.maps_parts / "batch_0000000.npz", image_id=np.asarray(ids), maps=maps.astype(np.float16))
    # A finished run merges its map batches into maps.npz; an interrupted one has only the batches.
    if complete:
        run.consolidate_maps()
    run.write_summary(model, method, metrics, ids if complete else _images()["image_id"].tolist())


def write_training_run(run_dir: Path, model: str, acc_video: float) -> None:
    run = TrainingRun(run_dir)
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"")
    counts = {
        split: {s: (i + 1) * k for i, s in enumerate(STAGES)} for k, split in enumerate(["train", "val", "test"], 1)
    }
    run.write_test_results({
        "model": model,
        "test/acc_video": acc_video,
        "test/acc_frame": acc_video - 0.01,
        "per_stage_acc": {s: (i % 5) / 5 for i, s in enumerate(STAGES)},
        "class_counts": counts,
    })


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    outputs = tmp_path / "outputs"
    approaches = [("cnn", "am"), ("cnn", "gradcampp"), ("abn", "attention"), ("brnpa", "attention")]
    for seed, (model, method) in enumerate(approaches):
        write_faithfulness_run(
            outputs / "faithfulness" / f"{model}_{method}",
            model,
            method,
            seed,
            map_size=28 if method == "attention" else 7,
        )
    # An interrupted run: no IAUC/IC yet and only 8 of the 12 images.
    write_faithfulness_run(
        outputs / "faithfulness" / "cnn_rise",
        "cnn",
        "rise",
        9,
        metrics=("dauc", "dc", "iic", "ad", "add"),
        n_images=8,
        complete=False,
    )
    for model, acc in (("cnn", 0.71), ("abn", 0.70), ("brnpa", 0.707)):
        write_training_run(outputs / "train" / model, model, acc)
    # A newer CNN training run that no faithfulness run explained: its accuracy must not be used.
    write_training_run(outputs / "train" / "cnn_newer", "cnn", 0.5)
    return tmp_path


def _config(overrides: list[str]):
    return compose_config("report", overrides)


def test_report_end_to_end(runs: Path) -> None:
    out = runs / "report"
    cfg = _config(
        [
            f"runs=[{runs / 'outputs'}]",
            "bootstrap=40",
            "embedding.umap=false",
            "embedding.tsne_perplexity=5",
            "gallery.frames_per_stage=1",
        ]
    )
    report_md = build_report(cfg, out)
    for name in [
        "table1.csv",
        "table1.md",
        "table1.tex",
        "kendall_tau.csv",
        "table2_mask.csv",
        "table2_highlight.csv",
        "table2_all.tex",
        "table1_ci.csv",
        "ranks_ci.csv",
        "tsne.csv",
        "class_distribution.csv",
        "per_stage_accuracy.csv",
        "incomplete.csv",
        "map_agreement.csv",
        "map_agreement_images.csv",
        "report.html",
    ]:
        assert (out / name).is_file(), name
    for name in ["kendall_tau", "map_agreement", "tsne", "rank_intervals", "gallery", "class_distribution",
                 "per_stage_accuracy"]:
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.svg").is_file(), name

    table = pd.read_csv(out / "table1.csv")
    assert list(table["Approach"]) == ["AM", "Grad-CAM++", "RISE", "ABN", "BR-NPA"]
    assert table.set_index("Approach").loc[["AM", "ABN", "BR-NPA"], "Accuracy"].tolist() == pytest.approx(
        [71.0, 70.0, 70.7]
    )
    rows = pd.read_csv(runs / "outputs" / "faithfulness" / "cnn_am" / "faithfulness_rows.csv")
    expected = rows.groupby("metric")["value"].mean()  # NaN (undefined DC) left out
    assert table.loc[0, "DC"] == pytest.approx(expected["dc"]) and table.loc[0, "ADD"] == pytest.approx(expected["add"])
    assert np.isnan(table.set_index("Approach").loc["RISE", "IAUC"])

    tsne_points = pd.read_csv(out / "tsne.csv")
    # Only the 8 images every approach scored; IIC excluded.
    assert len(tsne_points) == 6 * 8 and set(tsne_points["metric"]) == {"DAUC", "IAUC", "DC", "IC", "AD", "ADD"}

    incomplete = pd.read_csv(out / "incomplete.csv")
    rise = incomplete[incomplete["approach"] == "RISE"]
    assert {"IAUC", "IC"} <= set(rise["metric"]) and rise["problem"].str.contains("complete").any()
    undefined_dc = incomplete[(incomplete["metric"] == "DC") & incomplete["problem"].str.startswith("undefined")]
    assert set(undefined_dc["approach"]) == {"RISE", "AM", "Grad-CAM++", "ABN", "BR-NPA"}  # each has a NaN DC
    assert not incomplete[incomplete["approach"] == "AM"]["problem"].str.contains("partial|missing").any()

    text = report_md.read_text()
    assert "Incomplete or undefined results" in text and "partial: 8/12 images scored" in text
    assert "figures/gallery.png" in text and "frames shown" not in text
    assert "without their crop" not in text  # every frame's crop was saved with its maps
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8 and "<table>" in html  # the reliability figure included
    assert "## Agreement between the approaches' maps" in text and "figures/map_agreement.png" in text

    agreement = pd.read_csv(out / "map_agreement.csv", index_col=0)
    assert list(agreement.index) == list(agreement.columns) == ["AM", "Grad-CAM++", "RISE", "ABN", "BR-NPA"]
    assert np.allclose(agreement.to_numpy(), agreement.to_numpy().T) and np.allclose(np.diag(agreement), 1.0)
    shared = pd.read_csv(out / "map_agreement_images.csv", index_col=0)
    assert shared.loc["AM", "ABN"] == N_IMAGES and shared.loc["AM", "RISE"] == 8  # RISE's run stopped at 8 images


def test_report_without_crops_still_draws_the_gallery(tmp_path: Path) -> None:
    """Runs saved before maps.npz held the crops: the gallery shows the maps alone, and says so."""
    for seed, method in enumerate(("am", "gradcampp")):
        write_faithfulness_run(tmp_path / "faithfulness" / method, "cnn", method, seed, with_crops=False)
    out = tmp_path / "report"
    cfg = _config([f"runs=[{tmp_path / 'faithfulness'}]", "bootstrap=0", "embedding.umap=false",
                   "embedding.tsne_perplexity=5", "gallery.frames_per_stage=1"])
    text = build_report(cfg, out).read_text()
    assert "without their crop in maps.npz" in text
    assert (out / "figures" / "gallery.png").is_file()
    assert "No training run" in text and not (out / "table1_ci.csv").exists()


def test_report_from_published_table(tmp_path: Path) -> None:
    cfg = _config([f"table1_csv={PAPER_TABLE1}"])
    text = build_report(cfg, tmp_path).read_text()
    mask = pd.read_csv(tmp_path / "table2_mask.csv")
    assert mask["approach"].tolist()[:3] == ["BR-NPA", "InterByParts", "B-CNN"]
    assert "Only approach means are available" in text
    # Directions and groups in the prose come from the metrics' registrations.
    assert "Lower is better for DAUC and AD, higher for the others." in text
    assert "DAUC and AD negated first" in text
    assert "Mask = {DAUC, DC, ADD}, Highlight = {IAUC, IC, AD, IIC}, All = the seven metrics." in text
    assert (tmp_path / "figures" / "kendall_tau.png").is_file()


def test_no_results_names_the_command(tmp_path: Path) -> None:
    (tmp_path / "outputs" / "train").mkdir(parents=True)
    cfg = _config([f"runs=[{tmp_path / 'outputs'}]"])
    with pytest.raises(NoResultsError, match="python -m embryo_xai.faithfulness"):
        build_report(cfg, tmp_path / "report")


@pytest.mark.slow
def test_cli_with_wandb_offline(runs: Path) -> None:
    """The Hydra entry point prints where report.md is and logs an offline W&B run."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "embryo_xai.report",
            f"runs=[{runs / 'outputs'}]",
            "bootstrap=20",
            "embedding.tsne_perplexity=5",
            "wandb=offline",
            f"hydra.run.dir={runs / 'cli'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"WANDB_SILENT": "true", **dict(__import__("os").environ)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(runs / "cli" / "report.md") in result.stdout
    assert list((runs / "cli" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_gallery_frames_and_maps(runs: Path) -> None:
    """Frames are found by (video, RUN) and centre-cropped as in test; every map is upsampled onto them."""
    study = load_study(*find_runs([runs / "outputs"]))
    gallery = gather_gallery(study, ["sPNa", "s4", "sB"], 2, seed=0)
    assert gallery is not None and not gallery.notes
    assert gallery.maps.shape == (6, len(study.approaches), CROP, CROP)
    # RISE's interrupted run left only map batches, and only 8 images: frames come from those 8.
    assert np.isfinite(gallery.maps).all()
    assert np.allclose(gallery.maps.min(axis=(2, 3)), 0) and np.allclose(gallery.maps.max(axis=(2, 3)), 1)
    assert all(frame is not None and frame.shape == (CROP, CROP) for frame in gallery.frames)
    assert [title.split(" ")[0] for title in gallery.row_titles] == ["sPNa", "sPNa", "s4", "s4", "sB", "sB"]
    assert gallery.column_titles == ["frame", "AM", "Grad-CAM++", "RISE", "ABN", "BR-NPA"]


def test_report_refuses_to_pair_runs_over_different_frames(runs: Path) -> None:
    """ABN's run numbered other frames with the same image ids (another sample): no pairing, one clear error."""
    rows_file = runs / "outputs" / "faithfulness" / "abn_attention" / "faithfulness_rows.csv"
    rows = pd.read_csv(rows_file)
    rows.loc[rows["image_id"] == 14, "run"] += 100
    rows.loc[rows["image_id"] == 21, "video"] = "D2014.02.02_S0003_I132_WELL3"
    rows.to_csv(rows_file, index=False)
    message = (
        r"cannot pair the approaches image by image: 2 of 12 image ids name different frames .*"
        r"approaches involved: AM, Grad-CAM\+\+, RISE, ABN, BR-NPA.*"
        r"image_id 14 is D2013.01.01_S0001_I132_WELL1 RUN 12 for AM, Grad-CAM\+\+, RISE, BR-NPA "
        r"but D2013.01.01_S0001_I132_WELL1 RUN 112 for ABN; image_id 21 is .*WELL2 RUN 13 .* but "
        r"D2014.02.02_S0003_I132_WELL3 RUN 13 for ABN"
    )
    with pytest.raises(ImageMismatchError, match=message):
        load_study(*find_runs([runs / "outputs"]))
    result = subprocess.run(
        [sys.executable, "-m", "embryo_xai.report", f"runs=[{runs / 'outputs'}]", f"hydra.run.dir={runs / 'cli'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot pair the approaches")
