"""Sweep configs: Optuna search space, best-params file, DDP and SLURM options compose."""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from embryo_xai.hydra_callbacks import OptunaStudyFiles
from tests.helpers import CONF, compose_config


def compose_with_hydra(overrides: list[str]):
    cfg = compose_config("train", overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_optuna_search_space_has_the_papers_six_parameters():
    cfg = compose_with_hydra(["hparams_search=optuna", "model=brnpa"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"model.optimizer.lr", "model.optimizer.momentum", "model.optimizer.name",
                                   "data.batch_size", "model.net.dropout", "model.optimizer.weight_decay"}
    assert sweeper.n_trials == 20 and cfg.optimized_metric == "val/acc_video"
    assert sweeper.study_name == "brnpa" and sweeper.storage.startswith("sqlite:///")
    assert sweeper.storage.endswith("/optuna/brnpa.db")  # one study per model
    assert OmegaConf.select(cfg, "hydra.sweeper.sampler._target_").endswith("TPESampler")


def test_best_params_become_an_experiment_file(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump({
        "name": "optuna", "best_value": 0.81,
        "best_params": {"model.optimizer.lr": 0.003, "model.optimizer.name": "adamw", "data.batch_size": 16}}))
    callback = OptunaStudyFiles(str(tmp_path / "optuna"), str(tmp_path / "experiment"), "cnn")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    callback.on_multirun_start(cfg)
    assert (tmp_path / "optuna").is_dir()
    (tmp_path / "experiment").mkdir()
    callback.on_multirun_end(cfg)
    best = (tmp_path / "experiment" / "best_cnn.yaml").read_text()
    assert best.startswith("# @package _global_")
    assert yaml.safe_load(best) == {"model": {"optimizer": {"lr": 0.003, "name": "adamw"}},
                                    "data": {"batch_size": 16}}


def test_trainer_and_launcher_choices_compose():
    ddp = compose_with_hydra(["trainer=ddp"])
    assert ddp.trainer.devices == 2 and ddp.trainer.strategy == "ddp" and ddp.trainer.accelerator == "gpu"
    ddp_cpu = compose_with_hydra(["trainer=ddp_cpu"])
    assert ddp_cpu.trainer.accelerator == "cpu" and ddp_cpu.trainer.devices == 2
    slurm = compose_with_hydra(["hydra/launcher=submitit_slurm"])
    assert "SlurmLauncher" in slurm.hydra.launcher._target_
    paper = compose_with_hydra(["experiment=paper"])
    assert paper.data.crop_size == 448 and paper.model.net.backbone == "resnet50" and paper.trainer.max_epochs == 10


def test_study_files_list_the_papers_nine_approaches():
    from embryo_xai.main import approaches

    for name in ("demo", "demo_scratch", "paper"):
        study = OmegaConf.load(Path(CONF) / "study" / f"{name}.yaml")
        found = approaches(list(study.models), list(study.posthoc_methods))
        assert len(found) == 9 and ("brnpa", "attention") in found and ("cnn", "scorecam") in found
