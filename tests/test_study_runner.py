"""The study runner's steps (``python -m embryo_xai.main``), planned without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from embryo_xai import main as study_runner
from embryo_xai.errors import UsageError
from embryo_xai.utils import compose_job
from tests.helpers import CONF, REPO, compose_config

PLANS = REPO / "tests" / "data" / "study_plans.json"


def plan(overrides: list[str], tmp_path: Path) -> list[study_runner.Step]:
    return study_runner.plan_steps(compose_config("main", [*overrides, f"out={tmp_path / 'out'}"], tmp_path))


@pytest.mark.parametrize("case", json.loads(PLANS.read_text())["cases"], ids=lambda case: " ".join(case["overrides"]))
def test_plan_is_the_argparse_runners(case: dict, tmp_path: Path) -> None:
    """Every study plans exactly the steps, run dirs and overrides the argparse runner ran (captured from
    it into tests/data/study_plans.json), with its --models / --set now models= / extra.<step>=. That runner
    had no ground-truth layer: it is turned off here (its steps: the test below)."""
    out = str(tmp_path / "out")
    found = [[s.title, s.module, str(s.run_dir), s.done and str(s.done), s.overrides]
             for s in plan([*case["overrides"], "study.ground_truth.enabled=false"], tmp_path)]
    expected = json.loads(json.dumps(case["steps"]).replace("<out>", out))
    assert found == expected


def test_ground_truth_steps(tmp_path: Path) -> None:
    """Controls on the CNN into ground_truth/controls/, then the ground-truth step over them and the approaches'
    runs, then the report over train/, faithfulness/ and ground_truth/; no controls without the CNN."""
    out = tmp_path / "out"
    with_gt = plan(["study=demo", "extra.ground_truth=[sanity.n_images\\=1]"], tmp_path)
    without = plan(["study=demo", "study.ground_truth.enabled=false"], tmp_path)
    added = with_gt[len(without) - 1: -1]
    controls = [f"faithfulness cnn / {m} (control)" for m in ("random", "gaussian", "sobel")]
    assert [s.title for s in added] == [*controls, "ground truth"]
    assert added[0].run_dir == out / "ground_truth" / "controls" / "cnn-random"
    assert added[0].overrides[:3] == ["model=cnn", "method=random", f"train_run={out / 'train' / 'cnn'}"]
    assert added[-1].overrides == [f"runs=[{out / 'faithfulness'},{out / 'ground_truth' / 'controls'}]",
                                   "sanity.n_images=2", "sanity.steps=2", "sanity.n_images=1"]  # study's, extra
    assert added[-1].done == out / "ground_truth" / "ground_truth.json"
    assert with_gt[-1].overrides[0] == f"runs=[{out / 'train'},{out / 'faithfulness'},{out / 'ground_truth'}]"
    titles = [s.title for s in plan(["study=demo", "models=[abn]"], tmp_path)]
    assert "ground truth" in titles and not any("control" in t for t in titles)


def test_warm_started_steps_need_the_source_checkpoint(tmp_path: Path) -> None:
    steps = plan(["study=demo", "models=[abn,cnn]"], tmp_path)
    source = tmp_path / "out" / "train" / "cnn" / "checkpoints" / "best.ckpt"
    assert [(s.title, s.needs) for s in steps[:2]] == [("train cnn", None), ("train abn", source)]
    with pytest.raises(UsageError, match="train 'cnn' first"):
        study_runner.run_step(steps[1])  # before anything runs, finished or not


def test_distilled_model_trains_after_its_low_resolution_teacher(tmp_path: Path) -> None:
    steps = plan(["study=paper", "study.train=[experiment\\=demo]", "models=[brnpa,cnn]",
                  "+study.model_overrides.brnpa=[seed\\=3]", "study.posthoc_methods=[am]",
                  "extra.train=[trainer.max_epochs\\=1]"], tmp_path)
    out = tmp_path / "out"
    titles = [step.title for step in steps]
    assert titles[:3] == ["train brnpa teacher", "train brnpa", "train cnn"]
    teacher, student = steps[:2]
    assert teacher.run_dir == out / "teachers" / "brnpa" and student.run_dir == out / "train" / "brnpa"
    # the teacher: the same training, at low resolution (its override last), no teacher of its own
    assert teacher.overrides == ["experiment=demo", "model=brnpa", "seed=3", "trainer.max_epochs=1",
                                 "model.net.output_stride=32"]
    assert student.overrides == ["experiment=demo", "model=brnpa", "seed=3", "trainer.max_epochs=1",
                                 f"model.net.teacher_ckpt='{teacher.run_dir / 'checkpoints' / 'best.ckpt'}'"]
    # the teacher is no approach of the study, and the report reads train/ and faithfulness/ only
    assert not any("teacher" in title for title in titles[3:])
    assert "teachers" not in " ".join(steps[-1].overrides)


def test_paper_study_distils_brnpa_from_a_stride_32_teacher(tmp_path: Path) -> None:
    paper = compose_config("main", ["study=paper"], tmp_path).study
    assert list(paper.distill) == ["brnpa"] and list(paper.distill.brnpa) == ["model.net.output_stride=32"]
    assert not compose_config("main", ["study=demo"], tmp_path).study.distill


def test_unknown_model_is_one_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model.*foo.*brnpa"):
        plan(["models=[cnn,foo]"], tmp_path)


def test_only_a_complete_faithfulness_run_is_done(tmp_path: Path) -> None:
    step = next(s for s in plan(["study=demo"], tmp_path) if s.module == study_runner.FAITHFULNESS)
    assert not study_runner.is_done(step)
    step.done.parent.mkdir(parents=True)
    step.done.write_text(json.dumps({"complete": False}))
    assert not study_runner.is_done(step)  # resumed by the entry point
    step.done.write_text(json.dumps({"complete": True}))
    assert study_runner.is_done(step)


def test_in_process_faithfulness_composes_inside_the_runners_hydra_run(tmp_path: Path) -> None:
    """run_in_process composes with a Hydra of its own, which refuses to start inside the runner's
    Hydra app; the runner steps out for the call and gets its Hydra config back after it."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        runner = compose("main", overrides=[f"out={tmp_path}"], return_hydra_config=True)
        HydraConfig.instance().set_config(runner)
        with pytest.raises(ValueError, match="already initialized"):
            compose_job("faithfulness", [], tmp_path / "f", tmp_path)
        with study_runner._outside_this_hydra_run():
            assert compose_job("faithfulness", ["method=am"], tmp_path / "f", tmp_path).method.name == "am"
        assert GlobalHydra.instance().is_initialized() and HydraConfig.get().run.dir == str(tmp_path)
