"""A tiny study logs to W&B offline (training with its after-test callback, a faithfulness run, the report),
every run in the study's group with its job type; read back from the offline ``.wandb`` files, no network."""

from __future__ import annotations

import json
import struct
from argparse import Namespace
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from embryo_xai import main as study_runner
from embryo_xai.faithfulness import run_in_process
from tests.helpers import compose_config, tiny_train_overrides

BLOCK, HEADER = 32768, 7  # W&B's LevelDB-style log: 32 KiB blocks, 7-byte record headers


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of an offline run's ``.wandb`` file (wandb's own protobufs; the framing is LevelDB's)."""
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1
    records, chunks, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunks += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def _items(items) -> dict:
    """History / summary items as a dict; a nested value (a table, images) arrives leaf by leaf."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


def offline_run(root: Path) -> dict:
    """The one offline run under ``root``: its run record, every history row and the final summary."""
    (path,) = root.rglob("offline-run-*/run-*.wandb")
    run, history, summary = None, [], {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            history.append(_items(record.history.item))
        elif kind == "summary":
            summary |= _items(record.summary.update)
    assert run is not None
    return {"run": run, "history": history, "summary": summary,
            "logged": {key for row in history for key in row}}


@pytest.fixture()
def offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))


def test_tiny_study_logs_every_step_in_the_study_group(tiny_dataset, tmp_path: Path, offline) -> None:
    from embryo_xai.report import build_report
    from embryo_xai.train import train

    # training with the after-test callback: job type train, the callback's faithfulness keys per method
    cfg = compose_config("train", [*tiny_train_overrides(tiny_dataset[0]), "logger=wandb", "callbacks=faithfulness",
                                   "callbacks.faithfulness.methods=[am]", "callbacks.faithfulness.n_images=3",
                                   "metrics.max_steps=4", "study_name=tiny"], tmp_path / "train")
    train(cfg)
    train_dir = Path(cfg.paths.output_dir)
    trained = offline_run(train_dir / "wandb")
    assert (trained["run"].run_group, trained["run"].job_type) == ("tiny", "train")
    assert {"faithfulness/am/mean/dauc", "faithfulness/am/undefined/dauc", "faithfulness/am/rows",
            "faithfulness/am/overlays"} <= trained["logged"]
    assert "test/acc_video" in trained["logged"]

    # a faithfulness run: config, means and undefined counts as summary, rows table, overlays, progress steps
    faith_dir = tmp_path / "faithfulness" / "cnn-am"
    summary = run_in_process(["model=cnn", "method=am", f"train_run={train_dir}", "n_images=5", "batch_size=2",
                              "metrics.max_steps=4", "data.num_workers=0", "study_name=tiny"], faith_dir)
    faith = offline_run(faith_dir / "wandb")
    assert (faith["run"].run_group, faith["run"].job_type, faith["run"].display_name) == ("tiny", "faithfulness",
                                                                                      "cnn-am")
    config = {item.key: json.loads(item.value_json) for item in faith["run"].config.update}
    assert config["method"]["name"] == "am" and config["n_images"] == 5
    for metric, mean in summary["means"].items():
        assert faith["summary"][f"faithfulness/mean/{metric}"] == pytest.approx(mean, nan_ok=True)
        assert faith["summary"][f"faithfulness/undefined/{metric}"] == summary["undefined"][metric]
    progress = [row["faithfulness/images_done"] for row in faith["history"] if "faithfulness/images_done" in row]
    assert progress == [2, 4, 5]  # one step per batch of 2
    final = next(row for row in faith["history"] if "faithfulness/rows" in row)
    assert final["faithfulness/rows"]["_type"] == "table-file"
    assert final["faithfulness/rows"]["nrows"] == 5 * len(summary["means"])
    overlays = final["faithfulness/overlays"]
    assert overlays["_type"] == "images/separated" and 1 <= overlays["count"] <= 2 * 16

    # the report: every table and every figure, job type report
    report_cfg = compose_config("report", [f"runs=[{faith_dir.parent},{train_dir}]", "bootstrap=0",
                                           "embedding.umap=false", "embedding.tsne_perplexity=2",
                                           "study_name=tiny"], tmp_path / "report")
    report_dir = Path(report_cfg.paths.output_dir)
    build_report(report_cfg, report_dir)
    report = offline_run(report_dir / "wandb")
    assert (report["run"].run_group, report["run"].job_type) == ("tiny", "report")
    tables = {f"table/{p.stem}" for p in report_dir.glob("*.csv")}
    figures = {f"figure/{p.stem}" for p in (report_dir / "figures").glob("*.png")}
    # every CSV but the one a section keeps off W&B on purpose (add_table(log=False): per-pair image counts)
    assert tables - report["logged"] <= {"table/map_agreement_images"}
    assert len(tables & report["logged"]) >= 5 and figures and figures <= report["logged"]
    row = report["history"][0]
    assert all(row[k]["_type"] == "table-file" for k in tables & report["logged"])
    assert all(row[k]["_type"] == "image-file" for k in figures)


def test_disabled_environment_logs_nothing(tiny_train_run, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path / "cnn-am"
    run_in_process(["model=cnn", "method=am", f"train_run={tiny_train_run}", "n_images=2", "metrics.max_steps=4",
                    "data.num_workers=0"], run_dir)
    assert not (run_dir / "wandb").exists()


def test_study_runner_names_the_study_in_every_step(tmp_path: Path, monkeypatch) -> None:
    """Every W&B step of a study gets study_name=<the study> (the study's config name unless given)."""
    def plan(overrides: list[str]) -> list[study_runner.Step]:
        return study_runner.plan_steps(compose_config("main", [f"out={tmp_path / 'out'}", *overrides], tmp_path))

    logged = (study_runner.TRAIN, study_runner.FAITHFULNESS, study_runner.REPORT)
    for overrides, name in ((["study=demo_scratch"], "demo_scratch"), (["study_name=mystudy"], "mystudy")):
        steps = plan(overrides)
        assert {step.module for step in steps} >= set(logged)
        assert all(step.study_name == (name if step.module in logged else None) for step in steps)
    ran = []
    monkeypatch.setattr(study_runner.subprocess, "run", lambda command: ran.append(command) or Namespace(returncode=0))
    report = steps[-1]
    study_runner.run_step(report)
    assert ran[0][-2:] == ["study_name=mystudy", f"hydra.run.dir={report.run_dir}"]


def test_optuna_trials_are_sweep_trials_with_the_hyper_parameters_in_their_config(tmp_path: Path) -> None:
    cfg = compose_config("train", ["hparams_search=optuna"], tmp_path)
    assert cfg.logger.wandb.job_type == "sweep-trial" and cfg.logger.wandb.group == cfg.model.net.name
    assert compose_config("train", [], tmp_path).logger.wandb.job_type == "train"
