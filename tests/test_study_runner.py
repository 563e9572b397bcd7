"""The study runner's order of steps (``python -m embryo_xai.main``), without training: each step recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embryo_xai import main as study_runner


def test_distilled_model_trains_after_its_low_resolution_teacher(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[tuple[str, list[str], Path]] = []
    monkeypatch.setattr(study_runner, "run_step",
                        lambda title, module, overrides, run_dir, done: steps.append((title, overrides, run_dir)))
    monkeypatch.setattr(study_runner, "run_faithfulness_step",
                        lambda title, overrides, run_dir: steps.append((title, overrides, run_dir)))
    study = {"train": ["experiment=demo"], "models": ["brnpa", "cnn"], "model_overrides": {"brnpa": ["seed=3"]},
             "distill": {"brnpa": ["model.net.output_stride=32"]}, "posthoc_methods": ["am"],
             "faithfulness": [], "method_overrides": {}, "report": []}
    study_file = tmp_path / "study.yaml"
    study_file.write_text(json.dumps(study))
    out = tmp_path / "out"
    study_runner.main(["--study", str(study_file), "--out", str(out), "--set", "train:trainer.max_epochs=1"])
    titles = [title for title, _, _ in steps]
    assert titles[:3] == ["train brnpa teacher", "train brnpa", "train cnn"]
    (_, teacher, teacher_dir), (_, student, student_dir) = steps[:2]
    assert teacher_dir == out / "teachers" / "brnpa" and student_dir == out / "train" / "brnpa"
    # the teacher: the same training, at low resolution (its override last), no teacher of its own
    assert teacher == ["experiment=demo", "model=brnpa", "seed=3", "trainer.max_epochs=1", "model.net.output_stride=32"]
    assert student == ["experiment=demo", "model=brnpa", "seed=3", "trainer.max_epochs=1",
                       f"model.net.teacher_ckpt='{teacher_dir / 'checkpoints' / 'best.ckpt'}'"]
    # the teacher is no approach of the study, and the report reads train/ and faithfulness/ only
    assert not any("teacher" in title for title in titles[3:])
    assert "teachers" not in " ".join(steps[-1][1])


def test_paper_study_distils_brnpa_from_a_stride_32_teacher() -> None:
    from omegaconf import OmegaConf

    study = OmegaConf.load(study_runner.CONF / "paper.yaml")
    assert list(study.distill) == ["brnpa"] and list(study.distill.brnpa) == ["model.net.output_stride=32"]
    assert "distill" not in OmegaConf.load(study_runner.CONF / "demo.yaml")
