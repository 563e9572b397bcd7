"""What a user meets at the command line: paths that resolve in every launch mode, one-line errors
on bad input (exit 1, no traceback), the CPU notice, and the study's runs found by later commands."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from embryo_xai.analysis.published import load_published_table
from embryo_xai.callbacks.time_estimate import TrainingTimeEstimate
from embryo_xai.errors import UsageError
from embryo_xai.runs import TrainingRun
from tests.helpers import CONF, REPO, compose_config


def test_sweep_dir_resolves_without_a_hydra_run(tmp_path, monkeypatch):
    """Hydra computes hydra.sweep.dir before any job exists: ${hydra:runtime.cwd} crashed there."""
    monkeypatch.chdir(tmp_path)
    for name in ("train", "faithfulness", "report"):
        cfg = compose_config(name, ["hparams_search=optuna"] if name == "train" else [], return_hydra_config=True)
        HydraConfig.instance().cfg = None  # as when the sweeper computes the sweep dir
        sweep_dir = OmegaConf.select(cfg, "hydra.sweep.dir")
        assert sweep_dir.startswith(str(tmp_path / "outputs")), (name, sweep_dir)
    assert cfg.paths.data_dir == str(tmp_path / "data")
    cfg = compose_config("train", [f"paths.root_dir={tmp_path / 'elsewhere'}", "hparams_search=optuna"],
                         return_hydra_config=True)
    assert cfg.hydra.sweep.dir.startswith(str(tmp_path / "elsewhere" / "outputs"))
    # the Optuna sweep writes best_<model>.yaml where experiment=best_<model> is looked up
    assert cfg.hydra.callbacks.optuna_storage.experiment_dir == str(Path(CONF) / "experiment")


def run_cli(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, output
    for text in expected:
        assert text in error_lines[0], error_lines[0]


def test_bad_inputs_end_in_one_line(tmp_path, tiny_train_run):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.ckpt"
    data = (tiny_train_run / "checkpoints" / "best.ckpt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, text in ((corrupt, "corrupt, truncated or not a PyTorch checkpoint"),
                       (truncated, "corrupt, truncated or not a PyTorch checkpoint"),
                       (foreign, "not an embryo_xai training checkpoint")):
        assert_one_line_error(run_cli("embryo_xai.faithfulness", f"ckpt={path}", cwd=tmp_path), str(path), text)
    table = tmp_path / "table.csv"
    table.write_text("Name,Score\nCNN,0.1\n")
    assert_one_line_error(run_cli("embryo_xai.report", f"table1_csv={table}", cwd=tmp_path),
                          "found Name, Score", "expected model, method")
    unfinished = tmp_path / "unfinished_run"
    (unfinished / "checkpoints").mkdir(parents=True)
    assert_one_line_error(run_cli("embryo_xai.faithfulness", f"train_run={unfinished}", cwd=tmp_path),
                          "has no finished checkpoint")
    assert_one_line_error(run_cli("embryo_xai.faithfulness", f"train_run={tiny_train_run}",
                                  "metrics.metrics=[dauc,deletion]", cwd=tmp_path),
                          "unknown metric", "deletion", "iauc")
    assert_one_line_error(run_cli("embryo_xai.train", "callbacks=faithfulness", "logger=none",
                                  "callbacks.faithfulness.methods=[gradcam_pp]", cwd=tmp_path),
                          "unknown method", "gradcam_pp", "gradcampp")
    # the unknown method stopped the run before any training
    assert not list((tmp_path / "outputs").glob("train/runs/*/checkpoints/*.ckpt"))


def test_published_table_accepts_an_approach_column(tmp_path):
    reference = load_published_table(REPO / "tests" / "data" / "paper_table1.csv")
    frame = pd.read_csv(REPO / "tests" / "data" / "paper_table1.csv", dtype=str, keep_default_na=False)
    frame.insert(0, "Approach", frame.pop("model") + "/" + frame.pop("method"))
    frame.columns = [c.lower() if c in ("DAUC", "IC") else c for c in frame.columns]
    frame = frame.rename(columns={"accuracy": "Accuracy (%)"})
    other = tmp_path / "approach.csv"
    frame.to_csv(other, index=False)
    loaded = load_published_table(other)
    assert [a.label for a in loaded.approaches] == [a.label for a in reference.approaches]
    pd.testing.assert_frame_equal(loaded.means, reference.means)
    pd.testing.assert_series_equal(loaded.accuracy, reference.accuracy)
    with pytest.raises(UsageError, match="found approach, score"):
        bad = tmp_path / "bad.csv"
        bad.write_text("approach,score\nCNN/AM,1\n")
        load_published_table(bad)


def test_latest_finished_run_is_found_anywhere_under_outputs(tmp_path, tiny_train_run):
    outputs = tmp_path / "outputs"
    study_cnn = outputs / "main" / "train" / "cnn"  # where make run trains the CNN
    shutil.copytree(tiny_train_run, study_cnn)
    unfinished = outputs / "train" / "runs" / "later"
    unfinished.mkdir(parents=True)
    (unfinished / "test_metrics.json").write_text('{"model": "cnn"}')  # no checkpoint: not finished
    assert TrainingRun.latest(outputs, "cnn").dir == study_cnn
    with pytest.raises(UsageError, match="no finished training run of model 'ibp'"):
        TrainingRun.latest(outputs, "ibp")


class _TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_cpu_training_says_so_and_estimates_its_time(tmp_path, caplog):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 4)), batch_size=4)
    estimate = TrainingTimeEstimate(timed_steps=2, cpu_warning_s=0.0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=3, callbacks=[estimate], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="embryo_xai.callbacks.time_estimate"):
        trainer.fit(_TinyModule(), data)
    messages = [r.getMessage() for r in caplog.records]
    assert any("no accelerator found" in m and "experiment=demo" in m for m in messages), messages
    estimates = [m for m in messages if m.startswith("estimated training time")]
    assert len(estimates) == 1 and "30 steps" in estimates[0] and "experiment=demo" in estimates[0], messages
    assert 0 < estimate.estimate_s < 60


def test_study_runner_names_its_studies_and_rejects_an_unknown_model(tmp_path):
    def main(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "embryo_xai.main", *overrides], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)

    assert "study: demo, demo_scratch, paper" in main("--help").stdout
    unknown_study = main("study=nope")
    assert unknown_study.returncode == 1 and "Available options in 'study'" in unknown_study.stderr
    assert all(name in unknown_study.stderr for name in ("demo", "demo_scratch", "paper"))
    unknown_model = main("models=[cnn,foo]")
    assert unknown_model.returncode == 1 and "Traceback" not in unknown_model.stderr
    assert unknown_model.stderr.strip().splitlines()[-1].startswith("error: unknown model(s) foo")
    assert not (tmp_path / "outputs" / "main" / "train").exists()  # nothing ran
