"""Morphokinetics: stage recognition read as a timeline, the way the embryo field evaluates it.

The data set's paper (Gomez et al. 2022, "A time-lapse embryo dataset for morphokinetic parameter
prediction", Data in Brief) reports three figures of merit, which this module computes per video
and then averages over videos:

- ``p``: frame accuracy (the raw per-frame argmax),
- ``p_v``: frame accuracy after the predictions are made to respect the temporal order of the
  phases (here: Viterbi decoding over a left-to-right chain, :func:`decode_monotone`),
- ``p_t``: the share of annotated phase transitions whose predicted onset lies within a per-phase
  tolerance (hours) of the annotated one,

plus the mean absolute onset error per event in hours (as the CLEAVE audit of the data set also
reports). ``TOLERANCES_H`` are the paper's: its authors' benchmark code (``metrics.py`` of
github.com/TristanGomez44/train_on_biologists_annotations, ``phasesSTDs`` with ``threshold=1``) counts
a transition as found when the predicted onset is within one standard deviation of that event's
timing, in hours (tPNa 1.13, tPNf 0.50, t2 0.91, ..., t8 5.36, tM 5.46, tHB 15; tPB2, the first phase,
is never a transition). Override them with ``morphokinetics.tolerances_h={tM: 3.0}`` (train config).
Two differences from that code, both on purpose: its p_v decodes with the transition matrix counted
on the training annotations, here the chain only forbids going back (no parameter to fit, the same
for every model); and p_t is computed on the decoded sequence, where the paper's code reads the raw
argmax (whose onsets are ill-defined when the prediction flickers back and forth).

Onset of event ``c`` in a stage sequence: the hour of the first frame whose stage is ``>= c``. On a
monotone sequence that is where the stage reaches ``c`` (an event the sequence skips starts with
the next one); on the raw argmax it is the first frame that claims ``c`` or later. A transition is an
annotated event whose phase is present in the video's annotation and is not its first phase (the
first phase's onset precedes the recording). As in the paper's code, a transition counts for p_t only
if the decoded sequence enters that very phase: a skipped phase is a miss, even though its onset error
(measured from the next phase's onset) is defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from embryo_xai.data.stages import NUM_CLASSES, PHASES, STAGES

#: Per-event tolerance in hours for p_t: one standard deviation of the event's timing, the values of
#: the data set paper's benchmark code (see the module docstring). tPB2 is never a transition.
TOLERANCES_H: dict[str, float] = {"tPNa": 1.13, "tPNf": 0.50, "t2": 0.91, "t3": 1.81, "t4": 1.34, "t5": 1.49,
                                  "t6": 1.61, "t7": 2.93, "t8": 5.36, "t9+": 4.42, "tM": 5.46, "tSB": 3.78,
                                  "tB": 3.29, "tEB": 4.85, "tHB": 15.0}


def decode_monotone(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Most probable non-decreasing stage sequence of each video (Viterbi, left-to-right chain).

    ``log_probs (V, T, C)``: per-frame class log-probabilities, frames in time order, padded after
    ``lengths (V,)``. From one frame to the next a stage stays or moves forward by any number of
    stages (free of cost): annotations of the real data set skip phases, so skipping is allowed; the
    decoded path maximises the sum of its frames' log-probabilities. Returns ``(V, T)`` long; padded
    positions repeat the last frame's stage. Vectorised over videos and stages; loops over time only.
    """
    n_videos, n_frames, n_classes = log_probs.shape
    valid = torch.arange(n_frames, device=log_probs.device)[None, :] < lengths.to(log_probs.device)[:, None]
    score = log_probs[:, 0].clone()
    identity = torch.arange(n_classes, device=log_probs.device).expand(n_videos, n_classes)
    pointers = torch.empty(n_videos, n_frames, n_classes, dtype=torch.long, device=log_probs.device)
    pointers[:, 0] = identity
    for t in range(1, n_frames):
        # best predecessor of stage j among stages <= j: a running maximum over stages
        best, argbest = torch.cummax(score, dim=1)
        step = valid[:, t, None]
        score = torch.where(step, best + log_probs[:, t], score)
        pointers[:, t] = torch.where(step, argbest, identity)
    path = torch.empty(n_videos, n_frames, dtype=torch.long, device=log_probs.device)
    path[:, -1] = score.argmax(dim=1)
    for t in range(n_frames - 1, 0, -1):
        path[:, t - 1] = pointers[:, t].gather(1, path[:, t, None]).squeeze(1)
    return path


def onsets(stages: torch.Tensor, hours: torch.Tensor, valid: torch.Tensor,
           num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``(V, C)`` hour of the first valid frame whose stage is ``>= c`` (NaN where none is)."""
    reached = (stages[:, :, None] >= torch.arange(num_classes, device=stages.device)) & valid[:, :, None]
    times = torch.where(reached, hours[:, :, None], torch.full_like(hours[:, :, None], float("inf")))
    first = times.amin(dim=1)
    return torch.where(torch.isinf(first), torch.full_like(first, float("nan")), first)


@dataclass
class Videos:
    """Test frames grouped into a padded batch of videos, frames in time order."""

    names: list[str]
    lengths: torch.Tensor  # (V,)
    hours: torch.Tensor  # (V, T) float64, NaN where unknown or padded
    labels: torch.Tensor  # (V, T) long, -1 where padded
    log_probs: torch.Tensor  # (V, T, C)
    order: torch.Tensor  # (N,) flat position of each padded frame, in (video, time) order

    @property
    def valid(self) -> torch.Tensor:
        return torch.arange(self.labels.shape[1], device=self.labels.device)[None, :] < self.lengths[:, None]

    def scatter(self, per_frame: torch.Tensor) -> torch.Tensor:
        """A ``(V, T)`` tensor back to the flat frames' order ``(N,)``."""
        out = torch.empty(len(self.order), dtype=per_frame.dtype, device=per_frame.device)
        out[self.order] = per_frame[self.valid]
        return out


def group_videos(video: list[str], sort_key: torch.Tensor, hours: torch.Tensor, labels: torch.Tensor,
                 log_probs: torch.Tensor) -> Videos:
    """Flat per-frame tensors (N,) / (N, C) -> a padded batch of videos ordered by ``sort_key`` (RUN)."""
    unique, inverse = np.unique(np.asarray(video, dtype=str), return_inverse=True)
    names = unique.tolist()
    video_idx = torch.as_tensor(inverse, dtype=torch.long, device=labels.device)
    sort_key = sort_key.to(labels.device).long()
    order = torch.argsort(video_idx * (int(sort_key.max()) + 1) + sort_key, stable=True)
    lengths = torch.bincount(video_idx, minlength=len(names))
    starts = torch.cumsum(lengths, 0) - lengths
    sorted_video = video_idx[order]
    position = torch.arange(len(order), device=labels.device) - starts[sorted_video]
    n_frames = int(lengths.max())
    padded_hours = torch.full((len(names), n_frames), float("nan"), dtype=torch.float64, device=labels.device)
    padded_labels = torch.full((len(names), n_frames), -1, dtype=torch.long, device=labels.device)
    padded_lp = torch.zeros(len(names), n_frames, log_probs.shape[1], dtype=log_probs.dtype, device=log_probs.device)
    padded_hours[sorted_video, position] = hours[order].double()
    padded_labels[sorted_video, position] = labels[order]
    padded_lp[sorted_video, position] = log_probs[order]
    return Videos(names, lengths, padded_hours, padded_labels, padded_lp, order)


def _visited(stages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(V, T)`` stages -> ``(V, C)`` whether each stage occurs among the masked frames of each video."""
    seen = torch.zeros(stages.shape[0], NUM_CLASSES + 1, dtype=torch.bool, device=stages.device)
    seen.scatter_(1, torch.where(mask, stages, NUM_CLASSES), True)  # masked-out frames land in a spare column
    return seen[:, :NUM_CLASSES]


def _per_video_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(V, K)`` values -> ``(V,)`` mean over the masked entries (NaN for a video with none)."""
    counts = mask.sum(dim=1)
    totals = torch.where(mask, values.double(), 0.0).sum(dim=1)
    return torch.where(counts > 0, totals / counts.clamp(min=1), torch.full_like(totals, float("nan")))


def _mean_ci(per_video: np.ndarray, n_resamples: int, seed: int, level: float = 0.95) -> dict:
    """Mean over videos (NaN ignored) with a percentile bootstrap CI over videos."""
    from embryo_xai.analysis.bootstrap import resample_counts, resampled_means

    finite = per_video[np.isfinite(per_video)]
    if finite.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    boot = resampled_means(finite[None, :], resample_counts(finite.size, n_resamples, seed))[:, 0]
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(boot, [tail, 100 - tail])
    return {"mean": float(finite.mean()), "low": float(low), "high": float(high), "n": int(finite.size)}


def figures_of_merit(videos: Videos, decoded: torch.Tensor, tolerances_h: dict[str, float] | None = None,
                     n_resamples: int = 1000, seed: int = 0) -> dict:
    """p, p_v, p_t and onset errors (hours), per video then averaged, with bootstrap CIs over videos;
    per event and per stage as well. See the module docstring for the definitions."""
    chosen = {**TOLERANCES_H, **dict(tolerances_h or {})}  # a partial override keeps the other defaults
    # an event without a tolerance (tPB2, never a transition) is never found
    tolerances = torch.tensor([float(chosen.get(p, -math.inf)) for p in PHASES], dtype=torch.float64,
                              device=decoded.device)
    valid, labels = videos.valid, videos.labels
    raw = videos.log_probs.argmax(dim=2)
    hits_raw, hits_decoded = (raw == labels) & valid, (decoded == labels) & valid
    frames = valid.sum(dim=1).double()
    p = hits_raw.sum(dim=1) / frames
    p_v = hits_decoded.sum(dim=1) / frames

    timed = valid & torch.isfinite(videos.hours)
    true_onset = onsets(labels, videos.hours, timed)
    present = _visited(labels, timed)
    first_phase = torch.where(timed, labels, NUM_CLASSES).amin(dim=1)
    transition = present & (torch.arange(NUM_CLASSES, device=labels.device) > first_phase[:, None])
    error = (onsets(decoded, videos.hours, timed) - true_onset).abs()
    # never reached, or reached only by skipping the phase: a miss (the paper's code)
    within = (torch.nan_to_num(error, nan=float("inf")) <= tolerances) & _visited(decoded, timed)
    p_t = _per_video_mean(within.double(), transition)
    onset_error = _per_video_mean(error, transition & torch.isfinite(error))

    per_video = {name: value.cpu().numpy() for name, value in
                 {"p": p, "p_v": p_v, "p_t": p_t, "onset_error_h": onset_error}.items()}
    summary = {name: _mean_ci(values, n_resamples, seed) for name, values in per_video.items()}
    event_error = torch.where(transition, error, torch.full_like(error, float("nan"))).cpu().numpy()
    event_hit = torch.where(transition, within.double(), torch.full_like(error, float("nan"))).cpu().numpy()
    summary["onset_error_by_event_h"] = {phase: _mean_ci(event_error[:, c], n_resamples, seed)
                                         for c, phase in enumerate(PHASES)}
    summary["p_t_by_event"] = {phase: _mean_ci(event_hit[:, c], n_resamples, seed) for c, phase in enumerate(PHASES)}
    stage_frames = torch.zeros(NUM_CLASSES, dtype=torch.float64, device=labels.device)
    stage_frames.index_add_(0, labels[valid], torch.ones_like(labels[valid], dtype=torch.float64))
    per_stage = {}
    for name, hits in (("p", hits_raw), ("p_v", hits_decoded)):
        counts = torch.zeros_like(stage_frames).index_add_(0, labels[valid], hits[valid].double())
        per_stage[name] = dict(zip(STAGES, (counts / stage_frames).tolist()))
    summary["per_stage"] = per_stage
    summary["tolerances_h"] = {p: float(chosen[p]) for p in PHASES if p in chosen}
    summary["n_videos"] = len(videos.names)
    summary["timed_videos"] = int(timed.any(dim=1).sum())
    return summary


def evaluate(video: list[str], run: torch.Tensor, hours: torch.Tensor, labels: torch.Tensor,
             log_probs: torch.Tensor, tolerances_h: dict[str, float] | None = None,
             n_resamples: int = 1000, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Figures of merit of flat per-frame test outputs, and each frame's decoded stage ``(N,)``."""
    videos = group_videos(video, run, hours, labels, log_probs)
    decoded = decode_monotone(videos.log_probs, videos.lengths)
    return figures_of_merit(videos, decoded, tolerances_h, n_resamples, seed), videos.scatter(decoded)


def scalars(results: dict, prefix: str = "test/morphokinetics/") -> dict[str, float]:
    """The headline numbers as flat scalars for Lightning loggers (W&B)."""
    flat = {f"{prefix}{name}": results[name]["mean"] for name in ("p", "p_v", "p_t", "onset_error_h")}
    flat |= {f"{prefix}onset_error_h/{event}": value["mean"]
             for event, value in results["onset_error_by_event_h"].items()}
    return {k: float(v) for k, v in flat.items() if v is not None}
