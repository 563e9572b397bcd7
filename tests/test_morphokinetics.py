"""Morphokinetics (issue 17): monotone decoding, p / p_v / p_t / onset errors, frame times, run and report."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.sections import morphokinetics as morpho_section
from embryo_xai.analysis.writer import ReportWriter
from embryo_xai.data.reader import scan_dataset
from embryo_xai.data.stages import NUM_CLASSES, PHASES
from embryo_xai.morphokinetics import (
    TOLERANCES_H,
    decode_monotone,
    evaluate,
    figures_of_merit,
    group_videos,
    onsets,
)
from embryo_xai.runs import PREDICTION_COLUMNS, TrainingRun
from embryo_xai.train import frame_hours


def brute_force_monotone(log_probs: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """Best score over every non-decreasing sequence (the known optimum of a small case)."""
    n_frames, n_classes = log_probs.shape
    best = (-math.inf, ())
    for path in itertools.combinations_with_replacement(range(n_classes), n_frames):  # sorted = monotone
        score = float(log_probs[torch.arange(n_frames), torch.tensor(path)].sum())
        best = max(best, (score, path))
    return best


def path_score(log_probs: torch.Tensor, path: torch.Tensor) -> float:
    return float(log_probs[torch.arange(len(path)), path].sum())


def test_decoding_fixes_a_non_monotone_argmax_by_hand():
    # raw argmax 0 1 0 1 2: the dip at frame 2 is weak, so the optimum stays in stage 1 there
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    path = decode_monotone(probs.log()[None], torch.tensor([5]))[0]
    assert probs.argmax(1).tolist() == [0, 1, 0, 1, 2]
    assert path.tolist() == [0, 1, 1, 1, 2]


def test_decoding_may_skip_stages():
    probs = torch.full((4, 4), 0.02)
    probs[[0, 1, 2, 3], [0, 0, 3, 3]] = 0.94
    assert decode_monotone(probs.log()[None], torch.tensor([4]))[0].tolist() == [0, 0, 3, 3]


def test_decoding_is_the_optimum_and_padding_changes_nothing():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 4, 5])
    log_probs = torch.randn(3, 6, 4, generator=generator).mul(2).log_softmax(-1)
    log_probs[1, 4:] = 0.0  # padding with an arbitrary content
    log_probs[2, 5:] = 5.0
    paths = decode_monotone(log_probs, lengths)
    for v, n in enumerate(lengths.tolist()):
        best_score, best_path = brute_force_monotone(log_probs[v, :n])
        assert path_score(log_probs[v, :n], paths[v, :n]) == pytest.approx(best_score)
        assert torch.all(paths[v, 1:n] >= paths[v, : n - 1])
        assert torch.all(paths[v, n:] == paths[v, n - 1])
        assert decode_monotone(log_probs[v : v + 1, :n], lengths[v : v + 1])[0].tolist() == paths[v, :n].tolist()
        assert tuple(paths[v, :n].tolist()) == best_path


def one_hot_log_probs(stages: list[int]) -> torch.Tensor:
    probs = torch.full((len(stages), NUM_CLASSES), 0.01)
    probs[torch.arange(len(stages)), torch.tensor(stages)] = 0.85
    return probs.log()


def test_onset_is_first_frame_at_or_after_the_stage():
    stages = torch.tensor([[0, 0, 2, 2, 3, -1]])
    hours = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, float("nan")]], dtype=torch.float64)
    valid = torch.tensor([[True] * 5 + [False]])
    got = onsets(stages, hours, valid, num_classes=5)[0].tolist()
    assert got[:4] == [1.0, 3.0, 3.0, 5.0] and math.isnan(got[4])  # a skipped stage starts with the next


def test_p_t_and_onset_errors_on_hand_built_transitions():
    # one video, frames every 0.5 h from 10 h; annotated tPB2 x4, tPNa x4, tPNf x4 (two transitions:
    # tPNa at 12.0 h, tPNf at 14.0 h); decoded onsets at 12.5 h (0.5 h late) and 15.5 h (1.5 h late)
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    predicted = [0] * 5 + [1] * 6 + [2]
    hours = 10.0 + 0.5 * torch.arange(12, dtype=torch.float64)
    videos = group_videos(["a"] * 12, torch.arange(1, 13), hours, labels, one_hot_log_probs(predicted))
    decoded = decode_monotone(videos.log_probs, videos.lengths)
    assert decoded[0].tolist() == predicted  # already monotone: decoding keeps it
    results = figures_of_merit(videos, decoded, n_resamples=50)
    # wrong: frame 4 (still tPB2) and frames 8-10 (still tPNa)
    assert results["p"]["mean"] == pytest.approx(8 / 12)
    assert results["p_v"]["mean"] == pytest.approx(8 / 12)
    # the paper's tolerances: tPNa hit (0.5 h late, within 1.13 h), tPNf missed (1.5 h late, beyond 0.50 h)
    assert TOLERANCES_H["tPNa"] > 0.5 and TOLERANCES_H["tPNf"] < 1.5
    assert results["p_t"]["mean"] == pytest.approx(0.5)
    assert results["onset_error_h"]["mean"] == pytest.approx(1.0)
    by_event = results["onset_error_by_event_h"]
    assert by_event["tPNa"]["mean"] == pytest.approx(0.5) and by_event["tPNf"]["mean"] == pytest.approx(1.5)
    assert by_event["tPB2"]["mean"] is None  # the first phase is no transition
    loose = figures_of_merit(videos, decoded, tolerances_h={"tPNf": 2.0}, n_resamples=50)
    assert loose["p_t"]["mean"] == pytest.approx(1.0) and loose["tolerances_h"]["tPNa"] == TOLERANCES_H["tPNa"]


def test_a_transition_never_reached_is_a_miss_and_videos_average():
    # video a: labels 0 0 1 1, prediction stays 0 (tPNa never reached); video b: perfect
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    predicted = [0, 0, 0, 0, 0, 0, 1, 1]
    hours = torch.tensor([0.0, 1, 2, 3] * 2, dtype=torch.float64)
    results, decoded = evaluate(["a"] * 4 + ["b"] * 4, torch.tensor([1, 2, 3, 4] * 2), hours, labels,
                                one_hot_log_probs(predicted), n_resamples=200)
    assert decoded.tolist() == predicted
    assert results["p_t"]["mean"] == pytest.approx(0.5)  # mean of 0 (a) and 1 (b)
    assert results["onset_error_h"]["mean"] == pytest.approx(0.0)  # only b's onset is defined
    assert results["p"]["mean"] == pytest.approx(0.75)
    assert results["p_t"]["low"] <= 0.5 <= results["p_t"]["high"]
    assert results["per_stage"]["p"]["sPNa"] == pytest.approx(0.5)


def test_a_skipped_phase_is_a_p_t_miss_but_has_an_onset_error():
    # annotated 0 1 2 3 every hour; decoded 0 0 2 3 skips tPNa: its onset (from tPNf's, 2 h) is 1 h late,
    # within tPNa's 1.13 h, but the sequence never enters tPNa, so only tPNf and t2 are found
    labels = torch.tensor([0, 1, 2, 3])
    predicted = [0, 0, 2, 3]
    results, decoded = evaluate(["v"] * 4, torch.arange(1, 5), torch.arange(4, dtype=torch.float64), labels,
                                one_hot_log_probs(predicted), n_resamples=20)
    assert decoded.tolist() == predicted
    assert results["p_t"]["mean"] == pytest.approx(2 / 3)
    assert results["p_t_by_event"]["tPNa"]["mean"] == 0.0
    assert results["onset_error_by_event_h"]["tPNa"]["mean"] == pytest.approx(1.0)
    assert results["onset_error_h"]["mean"] == pytest.approx(1 / 3)
    assert "tPB2" not in results["tolerances_h"] and results["tolerances_h"]["t2"] == TOLERANCES_H["t2"]


def test_decoding_raises_frame_accuracy_of_a_noisy_sequence():
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    predicted = [0, 0, 2, 0, 0, 1, 1, 0, 1, 1, 2, 2, 1, 2, 2]  # isolated backward / forward flickers
    log_probs = one_hot_log_probs(predicted)
    results, decoded = evaluate(["v"] * 15, torch.arange(15), torch.arange(15, dtype=torch.float64), labels,
                                log_probs, n_resamples=20)
    assert results["p_v"]["mean"] > results["p"]["mean"]
    assert torch.all(decoded[1:] >= decoded[:-1])


def test_frame_hours_read_from_timing_files_with_the_release_quirks(tiny_dataset, tmp_path):
    root, info = tiny_dataset
    index = scan_dataset(root)  # truncated JPEG, duplicate F0/, missing frames, unannotated video
    hours = frame_hours(root, index.frames)
    assert torch.equal(hours, torch.tensor([0.25 * (f.run - 1) for f in index.frames], dtype=torch.float64))
    assert info["no_annotation"] not in {f.video for f in index.frames}
    # the real files' layout: header frame_index,time, one row per RUN; a video without a file gives NaN
    (root_copy := tmp_path / "embryo_dataset_time_elapsed").mkdir()
    video = index.frames[0].video
    # Windows line endings and a trailing blank line, as in files exported from the incubator's software
    (root_copy / f"{video}_timeElapsed.csv").write_bytes(b"frame_index,time\r\n1,0.0\r\n2,0.3\r\n3,0.5\r\n\r\n")
    frames = [f for f in index.frames if f.video == video][:2] + [f for f in index.frames if f.video != video][:1]
    assert [f.run for f in frames[:2]] == [2, 3]
    got = frame_hours(tmp_path, frames)
    assert got[:2].tolist() == [0.3, 0.5] and math.isnan(got[2])


def test_training_run_writes_morphokinetics_and_the_report_draws_them(tiny_train_run, tmp_path):
    run = TrainingRun(tiny_train_run)
    results = json.loads(run.metrics_file.read_text())["morphokinetics"]
    for key in ("p", "p_v", "p_t", "onset_error_h"):
        assert set(results[key]) == {"mean", "low", "high", "n"}
    assert 0.0 <= results["p"]["mean"] <= 1.0 and results["n_videos"] >= 1
    assert results["p"]["mean"] == pytest.approx(run.acc_video, abs=1e-6)  # p is the per-video accuracy
    assert set(results["onset_error_by_event_h"]) == set(PHASES)
    predictions = pd.read_csv(run.predictions_file)
    assert tuple(predictions.columns) == PREDICTION_COLUMNS
    assert predictions["hours"].notna().all()
    for _, frames in predictions.groupby("video"):
        assert frames.sort_values("run")["decoded"].is_monotonic_increasing

    writer = ReportWriter(tmp_path / "report")
    study = Study(approaches=[], means=pd.DataFrame(), accuracy=pd.Series(dtype=float), trainings=[run])
    [section] = morpho_section.section(study, writer, {"morphokinetics": {"timeline_videos": 2}})
    assert "p_v" in section.blocks[0]
    table = pd.read_csv(tmp_path / "report" / "morphokinetics.csv")
    assert table.loc[0, "p"] == pytest.approx(results["p"]["mean"])
    assert (tmp_path / "report" / "figures" / "morphokinetics_timeline.png").is_file()
    assert "morphokinetics_onset_errors" in writer.tables

    empty = Study(approaches=[], means=pd.DataFrame(), accuracy=pd.Series(dtype=float), trainings=[])
    [skipped] = morpho_section.section(empty, ReportWriter(tmp_path / "empty"), {})
    assert len(skipped.blocks) == 1 and "skipped" in skipped.blocks[0]


def test_report_lists_the_section_after_table1():
    from embryo_xai import report
    from embryo_xai.analysis.sections import tables

    order = list(report.SECTIONS)
    assert order.index(morpho_section.section) == order.index(tables.section) + 1
    assert Path(morpho_section.__file__).is_file()
