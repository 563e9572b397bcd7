"""The ground-truth layer end to end on a tiny synthetic study: training, faithfulness runs (a method and the
three controls), ``python -m embryo_xai.ground_truth`` and the report's section; skipped on a non-synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from embryo_xai import faithfulness, ground_truth
from embryo_xai.data.synthetic import generate_dataset
from embryo_xai.report import build_report
from embryo_xai.runs import GroundTruthRun
from tests.helpers import compose_config, tiny_train_overrides

APPROACHES = ["gradcampp", "random", "gaussian", "sobel"]


def evaluate(train_run: Path, out: Path, method: str) -> None:
    overrides = [f"train_run={train_run}", f"method={method}", "n_images=6", "batch_size=3", "data.num_workers=0",
                 "metrics.max_steps=4", "metrics.road_percentiles=[50]"]
    directory = out / ("ground_truth/controls" if method in APPROACHES[1:] else "faithfulness") / f"cnn-{method}"
    faithfulness.run_in_process(overrides, directory)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gt_study")
    data = generate_dataset(out / "data", videos=4, seed=3, size=72, frames_per_video=40, workers=1, progress=False)
    cfg = compose_config("train", [*tiny_train_overrides(data), "data.val_fraction=0.25"], out / "train_cnn")
    from embryo_xai.train import train

    train(cfg)
    for method in APPROACHES:
        evaluate(Path(cfg.paths.output_dir), out, method)
    gt = compose_config("ground_truth", [f"runs=[{out / 'faithfulness'},{out / 'ground_truth' / 'controls'}]",
                                         "sanity.n_images=2", "sanity.steps=2", "progress=false"], out / "gt")
    ground_truth.run(gt)
    return out


def test_ground_truth_run_files(study: Path) -> None:
    run = GroundTruthRun(study / "gt" / "run")
    summary = run.summary()
    assert summary["n_images"] == 6 and summary["approaches"] == 4 and summary["n_structures"] >= 12
    rows = run.table(run.rows_file)
    assert sorted(rows["method"].unique()) == sorted(APPROACHES) and len(rows) == 24
    assert rows["gt_spearman"].between(-1, 1).all() or rows["gt_spearman"].isna().any()
    assert set(rows.columns) >= {"gt_top1", "pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy",
                                 "roc_auc"}
    importance = run.table(run.importance_file)
    assert importance.groupby("image_id")["structure"].nunique().min() >= 2 and "zona" in set(importance["kind"])
    sanity = run.table(run.sanity_file)
    assert set(sanity["test"]) == {"randomisation", "random_logit"} and set(sanity["step"]) == {0, 1, 2}
    edges = sanity[(sanity["method"] == "sobel") & (sanity["test"] == "randomisation")]
    assert (edges["spearman"] > 0.999).all()  # the edge map ignores the model


def test_report_section_and_controls_kept_out_of_table1(study: Path) -> None:
    cfg = compose_config("report", [f"runs=[{study}]", "bootstrap=20", "embedding.umap=false",
                                    "embedding.tsne_perplexity=2", "gallery.frames_per_stage=1"])
    text = build_report(cfg, study / "report").read_text()
    assert "## Ground truth" in text and "Which metric agrees with the ground truth?" in text
    table1 = pd.read_csv(study / "report" / "table1.csv")
    assert not table1.apply(lambda row: "control" in " ".join(map(str, row)), axis=1).any()
    meta = pd.read_csv(study / "report" / "meta_evaluation.csv")
    assert {"DAUC", "ROAD", "Pointing game"} <= set(meta["metric"])
    assert meta["tau"].dropna().between(-1, 1).all() and meta.set_index("metric")["tau"][["DAUC", "IAUC"]].notna().all()
    by_approach = pd.read_csv(study / "report" / "ground_truth.csv")
    assert by_approach["control"].sum() == 3 and len(by_approach) == 4
    assert (study / "report" / "figures" / "meta_evaluation.png").is_file()
    assert (study / "report" / "figures" / "randomisation.png").is_file()


def test_skipped_in_one_line_on_a_data_set_without_generator_record(study: Path, tmp_path: Path) -> None:
    for run_dir in (study / "faithfulness").iterdir():  # the same runs, their data set no longer synthetic
        target = tmp_path / "faithfulness" / run_dir.name
        target.mkdir(parents=True)
        for file in run_dir.iterdir():
            if file.is_file():
                target.joinpath(file.name).write_bytes(file.read_bytes())
        settings = json.loads((target / "settings.json").read_text())
        settings["data"]["root"] = str(tmp_path / "real")
        (target / "settings.json").write_text(json.dumps(settings))
    cfg = compose_config("ground_truth", [f"runs=[{tmp_path / 'faithfulness'}]"], tmp_path / "gt")
    summary = ground_truth.run(cfg)
    assert "no generator record" in summary["skipped"]
    report = compose_config("report", [f"runs=[{tmp_path}]", "bootstrap=0", "embedding.umap=false",
                                       "embedding.tsne_perplexity=2", "gallery.frames_per_stage=1"])
    assert "Skipped: the data set at" in build_report(report, tmp_path / "report").read_text()
