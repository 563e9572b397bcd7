"""When things happen in one synthetic video: the 16 events and the recording window around them."""

from __future__ import annotations

import numpy as np

from embryo_xai.data.stages import PHASES

# Duration of stages sPB2 .. sEB in hours (mean, sd); sHB lasts until the recording stops.
STAGE_HOURS: tuple[tuple[float, float], ...] = (
    (4.0, 1.5), (13.0, 2.5), (6.0, 1.5), (10.0, 2.0), (1.5, 1.0), (10.0, 2.0), (2.0, 1.0), (1.8, 1.0),
    (2.2, 1.2), (5.0, 2.5), (13.0, 3.0), (11.0, 3.0), (6.0, 2.0), (13.0, 3.0), (14.0, 3.0),
)
FRAME_HOURS = 0.25  # one frame every ~15 min, as in the real recordings
DEFAULT_FRAMES = (300, 420)


def plan_timeline(rng: np.random.Generator, frames_per_video: int | None) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray, np.ndarray]:
    """Random event times and the recording window.

    Returns (event_hours (16,), frame_hours (K,), stage per frame (K,), labelled flag per frame (K,)).
    Hours count from the tPB2 event. The window starts late or stops early often, so early phases and
    sHB are frequently missing (6-15 phases per video as in the real set).
    """
    means, sds = np.array(STAGE_HOURS).T
    durations = np.maximum(rng.normal(means, sds), 0.35 * means)
    events = np.concatenate([[0.0], np.cumsum(durations)])
    nominal_frames = int(rng.integers(DEFAULT_FRAMES[0], DEFAULT_FRAMES[1] + 1))
    frames = frames_per_video or nominal_frames
    span = nominal_frames * FRAME_HOURS * rng.uniform(0.9, 1.04)
    late = rng.random()
    if late < 0.5:
        start = rng.uniform(0.0, 0.6) * durations[0]
    elif late < 0.85:
        start = events[1] + rng.uniform(0.0, 0.7) * durations[1]
    else:
        start = rng.uniform(events[1], events[4])
    if start + span > events[-1] and start < events[1]:  # never all 16 phases in one video
        start = events[1] + rng.uniform(0.0, 0.3) * durations[1]
    steps = span / frames * rng.uniform(0.9, 1.1, size=frames)
    frame_hours = start + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    stages = np.searchsorted(events, frame_hours, side="right") - 1
    labelled = np.ones(frames, dtype=bool)
    if rng.random() < 0.3:
        labelled[: rng.integers(1, 4)] = False
    if rng.random() < 0.3:
        labelled[frames - rng.integers(1, 5):] = False
    return events, frame_hours, stages, labelled


def annotation_rows(stages: np.ndarray, labelled: np.ndarray) -> list[tuple[str, int, int]]:
    """(phase, first RUN, last RUN) of each present phase, RUN numbers starting at 1, inclusive ends."""
    runs = np.flatnonzero(labelled) + 1
    rows = []
    for stage in np.unique(stages[labelled]):
        stage_runs = runs[stages[labelled] == stage]
        rows.append((PHASES[stage], int(stage_runs[0]), int(stage_runs[-1])))
    return rows


def smoothstep(x: float) -> float:
    """0 below 0, 1 above 1, a smooth S in between: eases a stage's changes in and out."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)
