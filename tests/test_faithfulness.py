"""The faithfulness entry point: rows on disk, resume, bad input, DDP sharding."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embryo_xai import faithfulness
from embryo_xai.data.datamodule import EmbryoDataModule
from embryo_xai.errors import CheckpointError, UsageError
from embryo_xai.evaluation import ApproachRun, EvaluationConfig, evaluate_approach
from embryo_xai.models.checkpoint import load_classifier
from embryo_xai.runs import ROW_COLUMNS, FaithfulnessRun, TrainingRun
from tests.helpers import compose_config

FAST_METRICS = ["metrics.max_steps=4"]


def run_faithfulness(train_run: Path, out: Path, *overrides: str) -> dict:
    cfg = compose_config("faithfulness", [f"train_run={train_run}", "n_images=5", "batch_size=2",
                                          "data.num_workers=0", *FAST_METRICS, *overrides], out)
    return faithfulness.run(cfg), Path(cfg.paths.output_dir)


def read_rows(path: Path) -> list[dict]:
    with open(FaithfulnessRun(path).rows_file, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_summary_and_maps(tiny_train_run, tmp_path):
    summary, out = run_faithfulness(tiny_train_run, tmp_path, "method=gradcampp")
    rows = read_rows(out)
    assert list(rows[0]) == list(ROW_COLUMNS)  # registry keys only: labels are the report's
    assert len(rows) == 5 * 10 and len({r["image_id"] for r in rows}) == 5
    assert {r["metric"] for r in rows} == {"dauc", "iauc", "dc", "ic", "iic", "ad", "add", "road_morf", "road_lerf",
                                           "road"}  # conf/metrics/default.yaml: the paper's seven and ROAD
    assert all(r["method"] == "gradcampp" and r["model"] == "cnn" for r in rows)
    assert summary["complete"] and summary["n_images"] == 5
    saved = json.loads((out / "summary.json").read_text())
    for metric, mean in saved["means"].items():
        values = [float(r["value"]) for r in rows if r["metric"] == metric]
        finite = [v for v in values if v == v]
        assert mean == pytest.approx(sum(finite) / len(finite)) if finite else mean != mean
    maps = __import__("numpy").load(out / "maps.npz")
    assert sorted(maps["image_id"].tolist()) == sorted({int(r["image_id"]) for r in rows})
    assert maps["maps"].shape[1:] == (2, 2)
    assert maps["crops"].dtype == "uint8" and maps["crops"].shape == (5, 64, 64)  # what the model saw
    settings = json.loads((out / "settings.json").read_text())
    assert Path(settings["train_run"]) == tiny_train_run.resolve()
    assert settings["train_accuracy"] == TrainingRun(tiny_train_run).acc_video


def test_rerun_resumes_without_recomputing(tiny_train_run, tmp_path, monkeypatch):
    _, out = run_faithfulness(tiny_train_run, tmp_path, "method=am")
    full = read_rows(out)
    # simulate an interruption after the first 2 images: keep only their rows
    kept_ids = sorted({r["image_id"] for r in full}, key=int)[:2]
    with open(FaithfulnessRun(out).rows_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_COLUMNS)
        writer.writeheader()
        writer.writerows(r for r in full if r["image_id"] in kept_ids)
    explained = []
    original = faithfulness.evaluate_approach.__globals__["score_batch"]

    def counting(model, explainer, images, labels, run):
        explained.append(len(images))
        return original(model, explainer, images, labels, run)

    monkeypatch.setitem(faithfulness.evaluate_approach.__globals__, "score_batch", counting)
    run_faithfulness(tiny_train_run, tmp_path, "method=am")
    assert sum(explained) == 3  # only the 3 unfinished images
    resumed = read_rows(out)
    key = lambda r: (int(r["image_id"]), r["metric"])  # noqa: E731
    assert sorted(resumed, key=key) == sorted(full, key=key)
    explained.clear()
    run_faithfulness(tiny_train_run, tmp_path, "method=am")
    assert explained == [] and len(read_rows(out)) == len(full)


def test_changed_settings_are_refused(tiny_train_run, tmp_path):
    run_faithfulness(tiny_train_run, tmp_path, "method=am")
    with pytest.raises(ValueError, match="other settings"):
        run_faithfulness(tiny_train_run, tmp_path, "method=am", "metrics.max_steps=3")


def test_attention_on_cnn_lists_what_applies(tiny_train_run, tmp_path):
    with pytest.raises(ValueError, match="does not apply to model 'cnn'.*gradcampp"):
        run_faithfulness(tiny_train_run, tmp_path, "method=attention")


def test_missing_and_foreign_checkpoints(tmp_path, tiny_train_run):
    with pytest.raises(CheckpointError, match=str(tmp_path / "nope.ckpt")):
        load_classifier(tmp_path / "nope.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an embryo_xai training checkpoint"):
        load_classifier(foreign)
    with pytest.raises(CheckpointError, match="pass model=cnn"):
        run_faithfulness(tiny_train_run, tmp_path, "model=brnpa", "method=attention")
    with pytest.raises(CheckpointError, match="no finished training run of model 'abn'"):
        cfg = compose_config("faithfulness", ["model=abn"], tmp_path)
        faithfulness.run(cfg)


def test_unknown_metric_is_listed(tiny_train_run, tmp_path):
    with pytest.raises(ValueError, match="dauc"):
        run_faithfulness(tiny_train_run, tmp_path, "method=am", "metrics.metrics=[dauc,bogus]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shard_worker(rank: int, world: int, port: int, train_run: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        evaluate_in(Path(train_run), Path(out), rank, world)
    finally:
        dist.destroy_process_group()


def evaluate_in(train_run: Path, out: Path, rank: int = 0, world: int = 1) -> None:
    torch.set_num_threads(1)
    model, _ = load_classifier(train_run / "checkpoints" / "best.ckpt")
    data = TrainingRun(train_run).data_config()
    data.pop("_target_")
    dm = EmbryoDataModule(**{**data, "num_workers": 0})
    dm.setup("test")
    run = ApproachRun(FaithfulnessRun(out), "cnn", "gradcampp", {"name": "gradcampp"}, ("dauc", "dc", "ad", "iic"),
                      {"max_steps": 4}, EvaluationConfig(batch_size=3))
    evaluate_approach(model, dm.datasets["test"], [0, 2, 3, 5, 7, 8, 9], run, rank=rank, world_size=world,
                      progress=False)


def test_ddp_sharded_rows_equal_single_process(tiny_train_run, tmp_path):
    evaluate_in(tiny_train_run, tmp_path / "single")
    mp.spawn(_shard_worker, args=(2, _free_port(), str(tiny_train_run), str(tmp_path / "ddp")), nprocs=2)
    single, sharded = read_rows(tmp_path / "single"), read_rows(tmp_path / "ddp")
    assert len(single) == 7 * 4
    for a, b in zip(single, sharded):
        assert {k: v for k, v in a.items() if k != "value"} == {k: v for k, v in b.items() if k != "value"}
        assert float(a["value"]) == pytest.approx(float(b["value"]), abs=1e-5, nan_ok=True)


def test_callback_after_test_writes_rows_and_logs(tiny_dataset, tmp_path):
    from embryo_xai.train import train
    from tests.helpers import tiny_train_overrides

    cfg = compose_config("train", [*tiny_train_overrides(tiny_dataset[0]), "callbacks=faithfulness",
                                   "callbacks.faithfulness.methods=[am,gradcampp]",
                                   "callbacks.faithfulness.n_images=3", "metrics.max_steps=4"], tmp_path)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    for method in ("am", "gradcampp"):
        rows = read_rows(out / "faithfulness" / f"cnn-{method}")
        assert len(rows) == 3 * 10
    logged = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "faithfulness/gradcampp/mean/dauc" in logged
    settings = FaithfulnessRun(out / "faithfulness" / "cnn-am").settings()
    assert Path(settings["train_run"]) == out and settings["n_images"] == 3
    assert settings["train_accuracy"] == pytest.approx(TrainingRun(out).acc_video)


def test_callback_refuses_to_mix_settings_into_a_run(tiny_dataset, tmp_path):
    """The settings guard covers the callback too: other metric options, same run dir -> refused."""
    from embryo_xai.train import train
    from tests.helpers import tiny_train_overrides

    common = [*tiny_train_overrides(tiny_dataset[0]), "callbacks=faithfulness", "callbacks.faithfulness.methods=[am]",
              "callbacks.faithfulness.n_images=2", f"callbacks.faithfulness.out_dir={tmp_path / 'shared'}"]
    train(compose_config("train", [*common, "metrics.max_steps=4"], tmp_path / "first"))
    with pytest.raises(UsageError, match="other settings"):
        train(compose_config("train", [*common, "metrics.max_steps=9"], tmp_path / "second"))


def test_bf16_precision_close_to_float32(tiny_train_run, tmp_path):
    exact, _ = run_faithfulness(tiny_train_run, tmp_path / "fp32", "method=gradcampp")
    fast, out = run_faithfulness(tiny_train_run, tmp_path / "bf16", "method=gradcampp", "precision=bf16",
                                 "channels_last=true")
    assert json.loads((out / "settings.json").read_text())["precision"] == "bf16"
    assert __import__("numpy").load(out / "maps.npz")["maps"].dtype == "float16"  # stored as before
    for metric in ("dauc", "iauc", "ad", "add"):
        assert fast["means"][metric] == pytest.approx(exact["means"][metric], abs=0.05), metric


def test_unknown_precision_is_refused(tiny_train_run, tmp_path):
    with pytest.raises(UsageError, match="precision must be one of"):
        run_faithfulness(tiny_train_run, tmp_path, "method=am", "precision=fp8")


def test_bench_precision_runs_both_precisions(tiny_train_run, tmp_path):
    from benchmarks import bench_precision

    (tmp_path / "study" / "train").mkdir(parents=True)
    (tmp_path / "study" / "train" / "cnn").symlink_to(tiny_train_run)
    rows = bench_precision.main(["--study-dir", str(tmp_path / "study"), "--models", "cnn", "--methods", "am",
                                 "--n-images", "3", "--out", str(tmp_path / "bench")])
    assert [r["approach"] for r in rows] == ["cnn/am", "all"]
    assert rows[0]["float32 s"] > 0 and rows[0]["bf16 s"] > 0 and 0 <= rows[0]["predictions changed"] <= 3
    for precision in ("32", "bf16"):
        folder = "float32" if precision == "32" else "bf16"
        settings = json.loads((tmp_path / "bench" / folder / "cnn-am" / "settings.json").read_text())
        assert settings["precision"] == precision
    assert (tmp_path / "bench" / "bench_precision.csv").is_file()
