"""End to end, as a user runs it (slow: `make test-slow`): two models, two methods, a 2-trial
Optuna sweep, DDP on 2 CPU processes, the report over everything."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.helpers import tiny_train_overrides

pytestmark = pytest.mark.slow


def run(module: str, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", module, *overrides], capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled", **(env or {})}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_tiny_study_end_to_end(tiny_dataset, tmp_path):
    root = tiny_dataset[0]
    logs = tmp_path / "outputs"
    common = [f"paths.log_dir={logs}", *tiny_train_overrides(root)]
    for model in ("cnn", "brnpa"):
        run("embryo_xai.train", *common, f"model={model}", f"hydra.run.dir={logs}/train/{model}")
    fast = ["n_images=4", "batch_size=2", "metrics.max_steps=4", "data.num_workers=0", f"paths.log_dir={logs}"]
    run("embryo_xai.faithfulness", "-m", "method=am,gradcampp", "model=cnn", f"train_run={logs}/train/cnn", *fast)
    run("embryo_xai.faithfulness", "model=brnpa", "method=attention", f"train_run={logs}/train/brnpa", *fast)
    for approach in ("cnn-am", "cnn-gradcampp", "brnpa-attention"):
        summary = json.loads((logs / "faithfulness" / approach / "summary.json").read_text())
        assert summary["complete"] and summary["n_images"] == 4
    run("embryo_xai.report", f"runs=[{logs}/train,{logs}/faithfulness]", "bootstrap=20",
        "embedding.umap=false", f"hydra.run.dir={logs}/report")
    table1 = (logs / "report" / "table1.csv").read_text()
    assert "Grad-CAM++" in table1 and "BR-NPA" in table1 and (logs / "report" / "report.html").is_file()


def test_optuna_sweep_two_trials_resumable(tiny_dataset, tmp_path):
    logs = tmp_path / "outputs"
    args = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", f"paths.log_dir={logs}",
            f"hydra.callbacks.optuna_storage.experiment_dir={tmp_path}", *tiny_train_overrides(tiny_dataset[0])]
    run("embryo_xai.train", *args)
    best = (tmp_path / "best_cnn.yaml").read_text()
    assert "optimizer" in best or "batch_size" in best
    db = logs / "optuna" / "cnn.db"
    count = lambda: sqlite3.connect(db).execute("select count(*) from trials").fetchone()[0]  # noqa: E731
    assert count() == 2
    run("embryo_xai.train", *args)  # same study name and storage: the study goes on
    assert count() == 4


def test_ddp_on_two_cpu_processes_one_run_dir_one_wandb_run(tiny_dataset, tmp_path):
    run_dir = tmp_path / "ddp_run"
    run("embryo_xai.train", *tiny_train_overrides(tiny_dataset[0]), "trainer=ddp_cpu", "logger=default",
        f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}", env={"WANDB_MODE": "offline"})
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert 0.0 <= metrics["test/acc_video"] <= 1.0
    # predictions of both ranks gathered, each test frame once
    rows = (run_dir / "test_predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)) == sum(metrics["class_counts"]["test"].values())
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp_run"]  # no extra Hydra dirs


def test_cnn_beats_global_statistics_by_far(tmp_path):
    """No shortcut in the synthetic set: a forest on global intensity statistics (mean, std,
    histogram) stays far below a small CNN trained on the same videos, tested on the same videos."""
    import numpy as np
    from PIL import Image
    from sklearn.ensemble import RandomForestClassifier

    from embryo_xai.data.synthetic import generate_dataset
    from embryo_xai.train import train
    from tests.helpers import compose_config
    from tests.test_synthetic import global_statistics

    root = generate_dataset(tmp_path / "syn", videos=24, seed=3, size=96, frames_per_video=150, progress=False)
    cfg = compose_config("train", [
        "experiment=demo", f"data.root={root}", "data.generate_if_missing=false", "data.crop_size=80",
        "data.frame_step=1", "data.num_workers=0", "logger=csv", "trainer.max_epochs=6"], tmp_path)
    cnn_accuracy = train(cfg)["test/acc_frame"]

    from embryo_xai.data.datamodule import EmbryoDataModule

    data = {k: v for k, v in cfg.data.items() if k != "_target_"}
    dm = EmbryoDataModule(**data)
    dm.setup()

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        frames = dm.datasets[split].frames
        stats = np.stack([global_statistics(np.asarray(Image.open(f.path).convert("L"))) for f in frames])
        return stats, np.array([f.label for f in frames])

    forest = RandomForestClassifier(n_estimators=200, random_state=0).fit(*features("train"))
    test_stats, test_labels = features("test")
    stats_accuracy = float((forest.predict(test_stats) == test_labels).mean())
    print(f"\nCNN frame accuracy {cnn_accuracy:.3f} vs global statistics {stats_accuracy:.3f}")
    assert cnn_accuracy > stats_accuracy + 0.2


def test_study_runner_warm_start_and_idempotent_rerun(tiny_dataset, tmp_path):
    """`python -m embryo_xai.main` (what `make run` calls) on a tiny study of one's own: the attention model
    starts from the CNN's backbone, every step lands, and a second run reuses every finished step."""
    logs = tmp_path / "outputs"
    study = {
        "train": [f"paths.log_dir={logs}", *tiny_train_overrides(tiny_dataset[0])],
        "models": ["brnpa", "cnn"],  # the warm-start source is trained first whatever the order
        "warm_start": {"from": "cnn", "overrides": ["trainer.max_epochs=1"]},
        "model_overrides": {},
        "posthoc_methods": ["am"],
        "faithfulness": ["n_images=3", "batch_size=3", "metrics.max_steps=4", "data.num_workers=0",
                         f"paths.log_dir={logs}", "precision=bf16"],
        "method_overrides": {},
        "report": ["bootstrap=20", "embedding.umap=false", f"paths.log_dir={logs}"],
    }
    study_file = tmp_path / "conf" / "study" / "tiny.yaml"  # a study of one's own, outside conf/
    study_file.parent.mkdir(parents=True)
    study_file.write_text(json.dumps(study))  # JSON is YAML
    args = ["--config-dir", str(tmp_path / "conf"), "study=tiny", f"out={tmp_path / 'study'}"]
    first = run("embryo_xai.main", *args)
    assert first.stdout.index("[run ] train cnn") < first.stdout.index("[run ] train brnpa")
    config = (tmp_path / "study" / "train" / "brnpa" / "checkpoints" / "config.yaml").read_text()
    assert "backbone_init: " + str(tmp_path / "study" / "train" / "cnn" / "checkpoints" / "best.ckpt") in config
    assert (tmp_path / "study" / "report" / "table1.md").is_file()
    # the runner's own Hydra run dir is out itself, beside the steps' dirs
    assert "[run ] train cnn" in (tmp_path / "study" / "main.log").read_text()
    assert (tmp_path / "study" / ".hydra" / "config.yaml").is_file()
    second = run("embryo_xai.main", *args)
    assert "[run ] train" not in second.stdout and "[run ] faithfulness" not in second.stdout
    assert second.stdout.count("[skip]") == 2 + 2  # 2 trainings, 2 approaches (the report always reruns)
