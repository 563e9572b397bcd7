"""Synthetic embryo time-lapse videos written in the real data set's on-disk layout (DESIGN.md §3).

Why: the real set is 30 GB and not always at hand; tests, the demo and localisation checks need a
set that a reader cannot tell apart by format, whose stages are learnable by a CNN from the embryo's
structures (cells, pronuclei, cavity, zona, hatching bulge) and NOT from global intensity statistics.

Each video simulates one embryo along a random timeline of the 16 events; cells keep their positions
between frames and divide (volume-conserving, so cells shrink as they multiply), then compact, cavitate,
expand and hatch. Recordings start late or stop early, so the class distribution is unbalanced like the
paper's Fig. 1. The embryo's intensity distribution is pinned per video (monotone mapping) and exposure,
contrast, gamma, noise and focus vary per frame, so mean/std/histogram say nothing about the stage.
An extra folder ``embryo_dataset_masks`` holds, per frame, a uint8 mask of the structures
that define its stage (codes in ``MASK_CODES``). Everything is drawn with numpy distance fields inside
bounding boxes and is byte-deterministic for a seed (one ``numpy.random.Generator`` per video).

    python -m embryo_xai.data.synthetic --out DIR --videos N --seed S [--size 500]
        [--focal-planes F0 | all | F-15 F15 ...] [--frames-per-video K] [--quirks] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from embryo_xai.data.stages import NUM_CLASSES, PHASES, STAGES

FOCAL_PLANES: tuple[str, ...] = ("F-45", "F-30", "F-15", "F0", "F15", "F30", "F45")
# Extra defocus (Gaussian sigma in pixels at 500 px) of each plane relative to the central one.
PLANE_DEFOCUS: dict[str, float] = {"F0": 0.0, "F-15": 2.5, "F15": 2.5, "F-30": 5.0, "F30": 5.0,
                                   "F-45": 8.0, "F45": 8.0}
MASK_CODES: dict[str, int] = {"polar_body": 1, "pronucleus": 2, "blastomere": 3, "compacted_mass": 4,
                              "cavity": 5, "zona": 6, "inner_cell_mass": 7, "hatching_bulge": 8}
# Structures that define each stage (label order): only these are kept in the frame's mask.
STAGE_MASK_STRUCTURES: tuple[tuple[str, ...], ...] = (
    ("polar_body",), ("pronucleus",), ("blastomere",),
    *((("blastomere",),) * 8),
    ("compacted_mass",), ("cavity",), ("cavity", "inner_cell_mass"), ("cavity", "zona"), ("hatching_bulge",),
)
# Duration of stages sPB2 .. sEB in hours (mean, sd); sHB lasts until the recording stops.
STAGE_HOURS: tuple[tuple[float, float], ...] = (
    (4.0, 1.5), (13.0, 2.5), (6.0, 1.5), (10.0, 2.0), (1.5, 1.0), (10.0, 2.0), (2.0, 1.0), (1.8, 1.0),
    (2.2, 1.2), (5.0, 2.5), (13.0, 3.0), (11.0, 3.0), (6.0, 2.0), (13.0, 3.0), (14.0, 3.0),
)
# Few knots keep the intensity mapping smooth (no stretched texture inside large uniform regions).
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 9)
FRAME_HOURS = 0.25  # one frame every ~15 min, as in the real recordings
DEFAULT_FRAMES = (300, 420)
STAGE = {name: i for i, name in enumerate(STAGES)}


@dataclass(frozen=True)
class VideoTask:
    """Everything a worker needs to render one video (picklable)."""

    index: int
    name: str
    seed: int
    out: Path
    size: int
    planes: tuple[str, ...]
    frames_per_video: int | None


# --------------------------------------------------------------------------------------------- timeline
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
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


# --------------------------------------------------------------------------------------------- drawing
class _Canvas:
    """Float scene and uint8 structure mask of the crop around the embryo, plus the tessellation buffers.

    Cells are ellipses; every pixel keeps the smallest and second smallest normalised distance to a cell
    and the winner's id, so touching cells get a dark boundary where their distances meet.
    """

    def __init__(self, xs: np.ndarray, ys: np.ndarray, scene: np.ndarray, mask: np.ndarray):
        self.xs, self.ys, self.scene, self.mask = xs, ys, scene, mask
        self.nearest = np.full(scene.shape, 9.0, np.float32)
        self.second = np.full(scene.shape, 9.0, np.float32)
        self.cell_id = np.full(scene.shape, -1, np.int16)

    def window(self, cx: float, cy: float, extent: float) -> tuple[slice, slice] | None:
        """Crop slices covering a box of half-size ``extent`` around (cx, cy); None if outside."""
        c0 = max(0, int(cx - extent - self.xs[0]))
        c1 = min(len(self.xs), int(cx + extent - self.xs[0]) + 2)
        r0 = max(0, int(cy - extent - self.ys[0]))
        r1 = min(len(self.ys), int(cy + extent - self.ys[0]) + 2)
        return (slice(r0, r1), slice(c0, c1)) if c1 > c0 and r1 > r0 else None

    def ellipse_distance(self, box: tuple[slice, slice], cx: float, cy: float, a: float, b: float,
                         angle: float) -> np.ndarray:
        """Normalised elliptic distance (1 on the outline) inside ``box``."""
        cos, sin = np.cos(angle), np.sin(angle)
        dx = (self.xs[box[1]] - cx)[None, :]
        dy = (self.ys[box[0]] - cy)[:, None]
        u = (dx * cos + dy * sin) / a
        v = (dy * cos - dx * sin) / b
        return np.sqrt(u * u + v * v)

    def add_cells(self, cells: np.ndarray) -> tuple[slice, slice] | None:
        """Tessellate ellipses ``cells`` rows (cx, cy, a, b, angle) into the nearest/second/id buffers.

        Returns the box covering them all (where ``paint_cells`` has work to do).
        """
        union = None
        for index, (cx, cy, a, b, angle) in enumerate(cells):
            box = self.window(cx, cy, max(a, b) * 1.3 + 2)
            if box is None:
                continue
            union = box if union is None else (
                slice(min(union[0].start, box[0].start), max(union[0].stop, box[0].stop)),
                slice(min(union[1].start, box[1].start), max(union[1].stop, box[1].stop)))
            dist = self.ellipse_distance(box, cx, cy, a, b, angle)
            nearest, second, ids = self.nearest[box], self.second[box], self.cell_id[box]
            wins = dist < nearest
            np.copyto(second, np.where(wins, nearest, np.minimum(second, dist)))
            np.copyto(ids, index, where=wins)
            np.minimum(nearest, dist, out=nearest)
        return union

    def paint_cells(self, cells: np.ndarray, fill: np.ndarray, line: np.ndarray, codes: np.ndarray,
                    texture: np.ndarray, line_width: float) -> None:
        """Tessellate then paint the cells: textured cytoplasm, dark membranes, structure codes in the mask."""
        box = self.add_cells(cells)
        if box is None:
            return
        ids, nearest, second = self.cell_id[box], self.nearest[box], self.second[box]
        radius = np.append(np.minimum(cells[:, 2], cells[:, 3]), 1.0).astype(np.float32)[ids]
        alpha = np.clip((1.0 - nearest) * radius + 0.5, 0.0, 1.0)
        outline = np.clip(1.0 - np.abs(1.0 - nearest) * radius / line_width, 0.0, 1.0)
        shared = np.clip(1.0 - (second - nearest) * radius * (0.5 / line_width), 0.0, 1.0) * alpha
        membrane = np.maximum(outline, shared)
        value = np.append(fill, 0.0).astype(np.float32)[ids] + texture[box]
        scene, mask = self.scene[box], self.mask[box]
        scene += alpha * (value - scene)
        scene -= membrane * np.append(line, 0.0).astype(np.float32)[ids]
        inside = nearest < 1.0
        mask[inside] = np.append(codes, 0).astype(np.uint8)[ids[inside]]
        nearest.fill(9.0)
        second.fill(9.0)
        ids.fill(-1)

    def blob(self, cx: float, cy: float, a: float, b: float, angle: float, fill: float | None,
             line: float, line_width: float, code: int = 0, texture: np.ndarray | None = None) -> None:
        """One standalone ellipse (pronucleus, cavity, bulge, nucleolus): optional fill, dark outline."""
        box = self.window(cx, cy, max(a, b) + 2 * line_width + 2)
        if box is None:
            return
        dist = self.ellipse_distance(box, cx, cy, a, b, angle)
        scene = self.scene[box]
        radius = min(a, b)
        if fill is not None:
            alpha = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)
            value = fill if texture is None else fill + texture[box]
            scene += alpha * (value - scene)
        if line:
            scene -= line * np.clip(1.0 - np.abs(1.0 - dist) * radius / line_width, 0.0, 1.0)
        if code:
            self.mask[box][dist < 1.0] = code


class EmbryoSimulator:
    """One embryo: fixed per-video appearance plus a cell state that evolves frame after frame."""

    def __init__(self, rng: np.random.Generator, size: int, events: np.ndarray):
        self.rng, self.size, self.events = rng, size, events
        s = size / 500.0
        self.scale = s
        zoom = rng.uniform(0.84, 1.1)
        self.zona_outer = 148.0 * s * zoom
        self.zona_thickness = rng.uniform(20.0, 26.0) * s * zoom
        self.expansion = rng.uniform(1.12, 1.25)
        self.line_width = max(5.0 * s, 1.3)
        self.center0 = size / 2 + rng.uniform(-30, 30, size=2) * s
        self.drift = np.zeros(2)
        self.rotation = rng.uniform(0, 2 * np.pi)
        self.background_level = rng.uniform(0.5, 0.6)
        self.background = self._background()
        self.texture_pad = int(40 * s) + 2
        self.texture = self._smooth_noise(size + 2 * self.texture_pad, cell=max(2.0, 4.0 * s), amp=0.05)
        self.relief_shift = max(1, round(3 * s))
        self.relief_gain = rng.uniform(0.4, 0.8)
        self.relief_dir = (1, int(rng.choice([0, 1])))  # positive shifts: the wrapped strip is at the start
        # The embryo's intensity distribution is pinned to this per-video one (see _equalise).
        spread = rng.beta(rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0), size=4096)
        self.embryo_quantiles = np.quantile(spread - spread.mean(), QUANTILE_LEVELS)
        self.embryo_mean, self.embryo_spread = rng.uniform(0.42, 0.5), rng.uniform(0.5, 0.8)
        # Cells in embryo coordinates (unrotated, centred): x, y, radius, elongation, axis angle.
        self.cells = np.zeros((0, 5))
        self.divisions_done = 0
        self.polar_body_angle = rng.uniform(0, 2 * np.pi)
        self.pronuclei_angle = rng.uniform(0, 2 * np.pi)
        self.icm_angle = rng.uniform(0, 2 * np.pi)
        self.cavity_offset = rng.uniform(-0.25, 0.25, size=2)
        self.hatch_angle = rng.uniform(0, 2 * np.pi)
        self.final_cells = int(rng.integers(13, 21))
        span9 = events[STAGE["s9+"] + 1] - events[STAGE["s9+"]]
        extra = np.sort(rng.uniform(0, 0.75, size=self.final_cells - 8)) * span9 + events[STAGE["s9+"]]
        extra[0] = events[STAGE["s9+"]]  # the 9th cell opens s9+
        self.division_hours = np.concatenate([events[STAGE["s2"]:STAGE["s8"] + 1], extra])
        self.te_cells = int(rng.integers(12, 18))
        self.icm_layout = rng.normal(0, 1, size=(int(rng.integers(6, 10)), 2))
        self.mass_bumps = rng.uniform(0, 2 * np.pi, size=3)

    # ----- per-video fields
    def _smooth_noise(self, side: int, cell: float, amp: float) -> np.ndarray:
        """Granular texture: coarse noise upsampled (cheap), zero mean, amplitude ``amp``."""
        coarse = max(2, int(side / cell))
        small = self.rng.standard_normal((coarse, coarse)).astype(np.float32)
        field = np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC))
        return (field * (amp / (field.std() + 1e-6))).astype(np.float32)

    def _background(self) -> np.ndarray:
        """Well bottom: level, slow shading, fine static grain and a vignette (dish illumination)."""
        size, rng = self.size, self.rng
        shading = self._smooth_noise(size, cell=size / 4, amp=rng.uniform(0.01, 0.04))
        grain = self._smooth_noise(size, cell=max(2.0, 6.0 * self.scale), amp=rng.uniform(0.005, 0.02))
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        vignette = coords[None, :] ** 2 + coords[:, None] ** 2
        gradient = rng.uniform(-0.08, 0.08) * coords[None, :] + rng.uniform(-0.08, 0.08) * coords[:, None]
        return self.background_level * (1 - rng.uniform(0, 0.5) * vignette + gradient) + shading + grain

    # ----- cell state
    def _divide(self, index: int) -> None:
        x, y, radius, elong, _ = self.cells[index]
        axis = self.rng.uniform(0, 2 * np.pi)
        child = radius * 2 ** (-1 / 3)
        offset = 0.45 * child * np.array([np.cos(axis), np.sin(axis)])
        daughters = np.array([[x + offset[0], y + offset[1], child, self.rng.uniform(1.0, 1.18), axis],
                              [x - offset[0], y - offset[1], child, self.rng.uniform(1.0, 1.18), axis]])
        self.cells = np.concatenate([np.delete(self.cells, index, axis=0), daughters])

    def _relax(self, inner: float, iterations: int) -> None:
        """Push overlapping cells apart and keep them inside the zona (vectorised over cells)."""
        pos, radius = self.cells[:, :2], self.cells[:, 2]
        for _ in range(iterations):
            delta = pos[:, None, :] - pos[None, :, :]
            dist = np.sqrt((delta ** 2).sum(-1)) + np.eye(len(pos)) + 1e-6
            overlap = np.clip(0.82 * (radius[:, None] + radius[None, :]) - dist, 0, None)
            np.fill_diagonal(overlap, 0)
            pos += 0.25 * ((overlap / dist)[..., None] * delta).sum(1)
            norm = np.sqrt((pos ** 2).sum(-1)) + 1e-6
            limit = np.maximum(inner - 0.92 * radius, 0.0)
            pos *= np.minimum(1.0, limit / norm)[:, None] * 0.97  # cohesion: no hole in the middle
        self.cells[:, :2] = pos

    def step_cells(self, hours: float, zygote_radius: float, inner: float) -> None:
        """Advance cleavage to ``hours``: due divisions (largest cell first), then relaxation and jitter."""
        if len(self.cells) == 0:
            self.cells = np.array([[0.0, 0.0, zygote_radius, 1.05, self.rng.uniform(0, np.pi)]])
        due = int(np.searchsorted(self.division_hours, hours, side="right"))
        iterations = 4
        while self.divisions_done < due:
            largest = np.flatnonzero(self.cells[:, 2] >= self.cells[:, 2].max() - 1e-6)
            self._divide(int(self.rng.choice(largest)))
            self.divisions_done += 1
            iterations = 30
        self.cells[:, :2] += self.rng.normal(0, 0.6 * self.scale, size=(len(self.cells), 2))
        if len(self.cells) > 1:
            self._relax(inner, iterations)

    # ----- rendering
    def _to_image(self, local: np.ndarray) -> np.ndarray:
        """Rotate embryo coordinates (N,2) by the video's rotation (image offsets from the centre)."""
        cos, sin = np.cos(self.rotation), np.sin(self.rotation)
        return np.stack([local[:, 0] * cos - local[:, 1] * sin, local[:, 0] * sin + local[:, 1] * cos], 1)

    def render(self, hours: float) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int, int, int]]:
        """Clean scene (float32 in ~[0, 1]), structure mask (uint8), stage index at time ``hours`` and the
        box (left, top, right, bottom) outside which the frame is plain background."""
        rng, s = self.rng, self.scale
        stage = int(np.searchsorted(self.events, hours, side="right") - 1)
        progress = 1.0 if stage == NUM_CLASSES - 1 else (
            (hours - self.events[stage]) / (self.events[stage + 1] - self.events[stage]))
        if stage == STAGE["sHB"]:
            progress = min((hours - self.events[stage]) / 8.0, 1.0)

        # zona expansion and thinning (sB onset -> sEB -> sHB)
        grow = {STAGE["sB"]: 0.1 * progress, STAGE["sEB"]: 0.1 + 0.9 * smoothstep(progress),
                STAGE["sHB"]: 1.0}.get(stage, 0.0)
        outer = self.zona_outer * (1 + (self.expansion - 1) * grow)
        thickness = self.zona_thickness * (1 - 0.6 * grow)
        inner = outer - thickness

        self.drift = 0.97 * self.drift + rng.normal(0, 0.5 * s, size=2)
        cx, cy = self.center0 + self.drift
        # only the box around the embryo (and the hatching bulge) is drawn: the rest is background
        half = int(outer * (1.62 if stage == STAGE["sHB"] else 1.1)) + 4
        r0, r1 = max(0, int(cy) - half), min(self.size, int(cy) + half)
        c0, c1 = max(0, int(cx) - half), min(self.size, int(cx) + half)
        xs = np.arange(c0, c1, dtype=np.float32) + 0.5 - cx
        ys = np.arange(r0, r1, dtype=np.float32) + 0.5 - cy
        full = self.background.copy()
        mask_full = np.zeros((self.size, self.size), np.uint8)
        scene, mask = full[r0:r1, c0:c1], mask_full[r0:r1, c0:c1]
        pad, oy, ox = self.texture_pad, int(round(cy - self.center0[1])), int(round(cx - self.center0[0]))
        texture = self.texture[pad + r0 - oy: pad + r1 - oy, pad + c0 - ox: pad + c1 - ox]
        canvas = _Canvas(xs, ys, scene, mask)
        radial = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)

        # perivitelline space and zona pellucida ring with dark edges
        inside = np.clip(inner - radial + 0.5, 0.0, 1.0)
        disk = np.clip(outer - radial + 0.5, 0.0, 1.0)
        ring = disk - inside
        scene += inside * (self.background_level + 0.03 - scene)
        scene += ring * (0.66 + 0.5 * texture - scene)
        edge = max(3.0 * s, 1.0)
        scene -= 0.22 * (np.clip(1 - np.abs(radial - outer) / edge, 0, 1)
                         + np.clip(1 - np.abs(radial - inner) / edge, 0, 1))
        if stage == STAGE["sEB"]:
            mask[ring > 0.5] = MASK_CODES["zona"]

        zygote_radius = 0.83 * self.zona_outer - self.zona_thickness
        if stage <= STAGE["sM"]:
            self.step_cells(hours, zygote_radius, self.zona_outer - self.zona_thickness)
        if stage <= STAGE["s9+"]:
            self._draw_cleavage(canvas, stage, progress, zygote_radius, inner, texture)
        else:
            self._draw_blastocyst(canvas, stage, progress, inner, outer, texture)

        # Hoffman-like relief: brighten one side of every edge, darken the other
        dy, dx = self.relief_dir[0] * self.relief_shift, self.relief_dir[1] * self.relief_shift
        relief = scene - np.roll(scene, (dy, dx), axis=(0, 1))
        relief[:dy] = 0.0  # np.roll wraps the opposite border around: no relief there
        relief[:, :dx] = 0.0
        # fade the relief out before the box border so the box leaves no seam in the background
        scene += relief * np.clip((half - 3 - radial) / (0.04 * outer), 0.0, self.relief_gain)
        self._equalise(scene, disk)
        keep = np.zeros(256, np.uint8)
        for name in STAGE_MASK_STRUCTURES[stage]:
            keep[MASK_CODES[name]] = MASK_CODES[name]
        mask[...] = keep[mask]
        return full, mask_full, stage, (c0, r0, c1, r1)

    def _equalise(self, scene: np.ndarray, disk: np.ndarray) -> None:
        """Map the embryo's pixels monotonically onto the video's intensity distribution (jittered per frame).

        Why: the mix of membranes, cytoplasm and cavity differs by stage, so the embryo's histogram would
        give the stage away; after this the histogram is the same at every stage while every structure
        keeps its place in the intensity order, i.e. stays visible.
        """
        step = max(1, scene.shape[0] // 96)
        sample = scene[::step, ::step][disk[::step, ::step] > 0.99]
        source = np.quantile(sample, QUANTILE_LEVELS) + np.arange(len(QUANTILE_LEVELS)) * 1e-5
        jitter = self.rng.normal(0, 0.02, size=2)
        target = (self.embryo_mean + jitter[0]) + (self.embryo_spread + jitter[1]) * self.embryo_quantiles
        scene += disk * (np.interp(scene, source, target).astype(np.float32) - scene)

    def _draw_cleavage(self, canvas: _Canvas, stage: int, progress: float, zygote_radius: float,
                       inner: float, texture: np.ndarray) -> None:
        """Zygote with polar body and pronuclei, or the dividing blastomeres."""
        s = self.scale
        cells = self.cells.copy()
        if stage <= STAGE["sPNf"]:  # round zygote, elongating before the first cleavage
            cells[:, 3] = 1.12 + 0.2 * progress if stage == STAGE["sPNf"] else 1.0
        pos = self._to_image(cells[:, :2])
        a = cells[:, 2] * np.sqrt(cells[:, 3])
        b = cells[:, 2] / np.sqrt(cells[:, 3])
        ellipses = np.stack([pos[:, 0], pos[:, 1], a, b, cells[:, 4] + self.rotation], 1)
        count = len(ellipses)
        fill = np.full(count, 0.4)
        line = np.full(count, 0.3)
        codes = np.full(count, MASK_CODES["blastomere"])
        if stage <= STAGE["s8"]:  # polar body in the perivitelline space
            pb_radius = 17.0 * s
            dist = min(zygote_radius + pb_radius * 0.8, inner - pb_radius * 0.9)
            angle = self.polar_body_angle
            pb = np.array([[dist * np.cos(angle), dist * np.sin(angle), pb_radius, pb_radius * 0.85, angle]])
            ellipses = np.concatenate([ellipses, pb])
            fill = np.append(fill, 0.52)
            line = np.append(line, 0.3 if stage <= STAGE["sPNf"] else 0.15)
            codes = np.append(codes, MASK_CODES["polar_body"])
        canvas.paint_cells(ellipses, fill, line, codes, texture, self.line_width)
        if stage == STAGE["sPNa"]:
            self._draw_pronuclei(canvas, progress, zygote_radius)

    def _draw_pronuclei(self, canvas: _Canvas, progress: float, zygote_radius: float) -> None:
        """Two adjacent pronuclei with dark rims and nucleoli; they appear, then fade at the stage end."""
        presence = min(1.0, progress / 0.08) * min(1.0, (1.0 - progress) / 0.08 + 0.15)
        radius = 0.24 * zygote_radius * (0.7 + 0.3 * min(1.0, progress / 0.2))
        axis = self.pronuclei_angle
        offset = 1.0 * radius * np.array([np.cos(axis), np.sin(axis)])
        centre = self.cells[0, :2]
        for sign in (1.0, -1.0):
            x, y = self._to_image((centre + sign * offset)[None])[0]
            canvas.blob(x, y, radius, radius * 0.95, axis, fill=0.5 * presence + 0.4 * (1 - presence),
                        line=0.38 * presence, line_width=self.line_width, code=MASK_CODES["pronucleus"])
            for k in range(3):
                angle = axis + 2.1 * k + sign
                nx, ny = x + 0.45 * radius * np.cos(angle), y + 0.45 * radius * np.sin(angle)
                canvas.blob(nx, ny, 0.16 * radius + 0.6, 0.16 * radius + 0.6, 0.0, fill=0.5 - 0.2 * presence,
                            line=0.0, line_width=self.line_width)

    def _draw_blastocyst(self, canvas: _Canvas, stage: int, progress: float, inner: float, outer: float,
                         texture: np.ndarray) -> None:
        """Compaction, cavitation, blastocyst (trophectoderm + ICM), expansion and hatching."""
        s, lw = self.scale, self.line_width
        if stage in (STAGE["sM"], STAGE["sSB"]):
            squeeze = smoothstep(progress / 0.4) if stage == STAGE["sM"] else 1.0
            grow = 1.0 + (0.18 * smoothstep(progress) if stage == STAGE["sSB"] else 0.0)
            cells = self.cells.copy()
            cells[:, :2] *= (1 - 0.4 * squeeze) * grow
            cells[:, 2] *= (1 + 0.15 * squeeze) * grow
            pos = self._to_image(cells[:, :2])
            ellipses = np.stack([pos[:, 0], pos[:, 1], cells[:, 2], cells[:, 2] * 0.95, cells[:, 4]], 1)
            count = len(ellipses)
            canvas.paint_cells(ellipses, np.full(count, 0.37), np.full(count, 0.3 * (1 - 0.85 * squeeze)),
                               np.full(count, MASK_CODES["compacted_mass"]), texture * 1.4, lw)
            if stage == STAGE["sSB"]:
                radius = (0.15 + 0.4 * smoothstep(progress)) * inner
                cx, cy = self._to_image(self.cavity_offset[None] * inner * 0.5)[0]
                canvas.blob(cx, cy, radius, radius * 0.9, self.rotation, fill=0.74, line=0.25, line_width=lw,
                            code=MASK_CODES["cavity"])
            return
        # blastocyst: bright cavity filling the zona, thin trophectoderm cells, inner cell mass
        te_thickness = (26.0 - 10.0 * (outer / self.zona_outer - 1) / (self.expansion - 1)) * s
        cavity = inner - te_thickness * 0.6
        canvas.blob(0.0, 0.0, cavity, cavity, 0.0, fill=0.74, line=0.0, line_width=lw,
                    code=MASK_CODES["cavity"])
        angles = self.rotation + np.arange(self.te_cells) * 2 * np.pi / self.te_cells
        ring = inner - te_thickness / 2
        half_length = np.pi * ring / self.te_cells * 1.15
        te = np.stack([ring * np.cos(angles), ring * np.sin(angles), np.full_like(angles, half_length),
                       np.full_like(angles, te_thickness / 2), angles + np.pi / 2], 1)
        icm_radius = 22.0 * s
        icm_centre = (cavity - 2.2 * icm_radius) * np.array([np.cos(self.icm_angle), np.sin(self.icm_angle)])
        icm_pos = icm_centre + self.icm_layout * icm_radius * 0.9
        icm = np.column_stack([icm_pos, np.full((len(icm_pos), 2), icm_radius), np.zeros(len(icm_pos))])
        ellipses = np.concatenate([te, icm])
        fill = np.concatenate([np.full(len(te), 0.45), np.full(len(icm), 0.33)])
        codes = np.concatenate([np.zeros(len(te), int), np.full(len(icm), MASK_CODES["inner_cell_mass"])])
        canvas.paint_cells(ellipses, fill, np.full(len(ellipses), 0.3), codes, texture, lw)
        if stage == STAGE["sHB"]:  # herniating trophectoderm through a gap in the zona
            radius = (0.22 + 0.25 * smoothstep(progress)) * outer
            dist = outer + 0.2 * radius
            bx, by = dist * np.cos(self.hatch_angle), dist * np.sin(self.hatch_angle)
            canvas.blob(bx, by, radius, radius * 0.92, self.hatch_angle, fill=0.5, line=0.3, line_width=lw,
                        code=MASK_CODES["hatching_bulge"], texture=texture)
            canvas.blob(bx, by, radius - te_thickness, (radius - te_thickness) * 0.9, self.hatch_angle,
                        fill=0.72, line=0.2, line_width=lw, texture=texture * 0.2)


# --------------------------------------------------------------------------------------------- frames
class Camera:
    """Optics and sensor of one video: focus blur, noise, then the frame's illumination curve (LUT).

    Noise comes from a small bank of fields drawn once per video; a random bank and shift per frame
    give fresh-looking noise at the cost of a slice instead of a new Gaussian draw per pixel.
    """

    banks, pad = 3, 32

    def __init__(self, rng: np.random.Generator, size: int, noise: float):
        side = size + self.pad
        fields = rng.standard_normal((self.banks, side, side), dtype=np.float32) * (noise * 255.0)
        self.noise = np.round(fields).astype(np.int16)
        self.size = size

    def expose(self, scene: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, blur: float,
               lut: np.ndarray) -> Image.Image:
        """Frame from a clean scene; the blur only touches ``box`` (left, top, right, bottom), the embryo:
        the background around it is smooth, and blurring it would cost most of the frame's time."""
        image = Image.fromarray(np.clip(scene * 255.0, 0, 255).astype(np.uint8))
        if blur >= 0.6:
            image.paste(image.crop(box).filter(ImageFilter.GaussianBlur(blur)), box[:2])
        bank, oy, ox = rng.integers(0, (self.banks, self.pad, self.pad))
        pixels = np.asarray(image).astype(np.int16)
        pixels += self.noise[bank, oy: oy + self.size, ox: ox + self.size]
        np.clip(pixels, 0, 255, out=pixels)
        return Image.fromarray(lut[pixels])


def illumination_lut(rng: np.random.Generator, video_gain: float, video_gamma: float) -> np.ndarray:
    """Per-frame random exposure, contrast and gamma so global intensity statistics carry no stage."""
    gain = video_gain * rng.uniform(0.8, 1.25)
    gamma = video_gamma * rng.uniform(0.8, 1.25)
    contrast = rng.uniform(0.7, 1.4)
    offset = rng.uniform(-0.1, 0.1)
    levels = np.arange(256, dtype=np.float64) / 255.0
    curve = (levels * gain) ** gamma
    curve = (curve - 0.5) * contrast + 0.5 + offset
    return np.clip(np.round(curve * 255.0), 0, 255).astype(np.uint8)


def plane_dir(out: Path, plane: str) -> Path:
    return out / ("embryo_dataset" if plane == "F0" else f"embryo_dataset_{plane}")


def render_video(task: VideoTask) -> dict:
    """Render one video into every requested plane, its mask, annotations and times (runs in a worker)."""
    seeds = np.random.SeedSequence([task.seed, task.index]).spawn(3)
    rng, plane_rng, frame_rng = (np.random.default_rng(seed) for seed in seeds)
    events, frame_hours, stages, labelled = plan_timeline(rng, task.frames_per_video)
    embryo = EmbryoSimulator(rng, task.size, events)
    s = task.size / 500.0
    video_gain, video_gamma = rng.uniform(0.8, 1.2), rng.uniform(0.75, 1.3)
    video_blur = rng.uniform(0.2, 1.2)
    camera = Camera(rng, task.size, noise=rng.uniform(0.005, 0.015))
    folders = {plane: plane_dir(task.out, plane) / task.name for plane in task.planes}
    mask_folder = task.out / "embryo_dataset_masks" / task.name
    for folder in [*folders.values(), mask_folder]:
        folder.mkdir(parents=True, exist_ok=True)
    for run, hours in enumerate(frame_hours, start=1):
        scene, mask, _, box = embryo.render(float(hours))
        blur = video_blur * (rng.uniform(2.0, 4.0) if frame_rng.random() < 0.08 else rng.uniform(0.7, 1.3))
        lut = illumination_lut(rng, video_gain, video_gamma)
        stem = f"{task.name}_RUN{run}"
        for plane, folder in folders.items():
            plane_blur = float(np.hypot(blur, PLANE_DEFOCUS[plane]) * s)
            frame = camera.expose(scene, box, rng if plane == "F0" else plane_rng, plane_blur, lut)
            frame.save(folder / f"{stem}.jpeg", quality=85)
        Image.fromarray(mask).save(mask_folder / f"{stem}.png", compress_level=3)

    rows = annotation_rows(stages, labelled)
    (task.out / "embryo_dataset_annotations" / f"{task.name}_phases.csv").write_text(
        "".join(f"{phase},{first},{last}\n" for phase, first, last in rows))
    hpi_offset = rng.uniform(2.5, 4.5)  # tPB2 happens a few hours after insemination
    (task.out / "embryo_dataset_time_elapsed" / f"{task.name}_timeElapsed.csv").write_text(
        "frame_index,time\n" + "".join(f"{k},{h + hpi_offset:.2f}\n" for k, h in enumerate(frame_hours, 1)))
    grades = rng.choice(["A", "B", "C"], size=2, p=[0.3, 0.45, 0.25])
    return {"video": task.name, "grade_icm": str(grades[0]), "grade_te": str(grades[1]),
            "stage_counts": np.bincount(stages[labelled], minlength=NUM_CLASSES).tolist(), "rows": rows}


# --------------------------------------------------------------------------------------------- dataset
def video_names(count: int, seed: int) -> list[str]:
    """Unique real-looking names ``D<date>_S<slide>_I<incubator>_WELL<k>``: slides hold several wells."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    names: list[str] = []
    day = np.datetime64("2013-01-07") + int(rng.integers(0, 200))
    slide = int(rng.integers(100, 900))
    while len(names) < count:
        day = day + int(rng.integers(1, 6))
        slide += int(rng.integers(1, 40))
        incubator = int(rng.integers(100, 180))
        wells = np.sort(rng.choice(np.arange(1, 13), size=int(rng.integers(3, 9)), replace=False))
        date = str(day).replace("-", ".")
        names += [f"D{date}_S{slide:04d}_I{incubator}_WELL{well}" for well in wells]
    return names[:count]


def inject_quirks(out: Path, results: list[dict], seed: int, planes: Sequence[str]) -> dict:
    """Reproduce the public release's known defects in four distinct videos and describe them."""
    if len(results) < 4:
        raise ValueError("--quirks needs at least 4 videos (one per quirk)")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xBAD])).permutation(len(results))
    by_last_phase = [i for i in order if results[i]["rows"] and
                     results[i]["rows"][-1][2] - results[i]["rows"][-1][1] >= 2]
    missing = by_last_phase[0] if by_last_phase else int(order[0])
    truncated, duplicated, unannotated = [int(i) for i in order if i != missing][:3]
    f0 = out / "embryo_dataset"

    video = results[truncated]
    phase, first, last = video["rows"][len(video["rows"]) // 2]
    run = (first + last) // 2
    path = f0 / video["video"] / f"{video['video']}_RUN{run}.jpeg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    quirks: dict = {"truncated_jpeg": [{"video": video["video"], "run": run, "phase": phase,
                                        "path": str(path.relative_to(out))}]}

    video = results[duplicated]["video"]
    copies = sorted((f0 / video).glob("*.jpeg"))
    (f0 / video / "F0").mkdir()
    for frame in copies:
        shutil.copyfile(frame, f0 / video / "F0" / frame.name)
    quirks["duplicate_f0_dir"] = [{"video": video, "path": str((f0 / video / "F0").relative_to(out)),
                                   "frames": len(copies)}]

    video = results[missing]
    phase, first, last = video["rows"][-1]
    runs = [r for r in (last - 1, last) if r >= first]
    for r in runs:
        for folder in [plane_dir(out, p) for p in planes] + [out / "embryo_dataset_masks"]:
            for frame in (folder / video["video"]).glob(f"{video['video']}_RUN{r}.*"):
                frame.unlink()
    quirks["missing_frames"] = [{"video": video["video"], "phase": phase, "runs": runs}]

    video = results[unannotated]["video"]
    (out / "embryo_dataset_annotations" / f"{video}_phases.csv").unlink()
    quirks["missing_annotations"] = [{"video": video}]
    (out / "quirks.json").write_text(json.dumps(quirks, indent=2) + "\n")
    return quirks


def generate_dataset(out: Path, videos: int, seed: int, size: int = 500,
                     focal_planes: Sequence[str] | str = ("F0",), frames_per_video: int | None = None,
                     quirks: bool = False, workers: int = 2, progress: bool = True) -> Path:
    """Write ``videos`` synthetic videos under ``out`` in the real layout; returns ``out``.

    ``focal_planes`` is a list of plane names or ``"all"``; ``frames_per_video`` overrides the realistic
    300-420 frames (the recording still spans the same hours). Byte-identical output for a given seed.
    """
    out = Path(out)
    planes = FOCAL_PLANES if focal_planes == "all" else tuple(focal_planes)
    unknown = set(planes) - set(FOCAL_PLANES)
    if unknown or "F0" not in planes:
        raise ValueError(f"focal planes must include F0 and be among {FOCAL_PLANES}, got {planes}")
    if frames_per_video is not None and frames_per_video < 2:
        raise ValueError("frames_per_video must be at least 2")
    for folder in ("embryo_dataset_annotations", "embryo_dataset_time_elapsed"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    tasks = [VideoTask(i, name, seed, out, size, planes, frames_per_video)
             for i, name in enumerate(video_names(videos, seed))]
    bar = dict(total=len(tasks), unit="video", desc="synthetic videos", disable=not progress)
    if workers > 1:
        with multiprocessing.get_context().Pool(workers) as pool:
            results = list(tqdm(pool.imap(render_video, tasks), **bar))
    else:
        results = [render_video(task) for task in tqdm(tasks, **bar)]
    with open(out / "embryo_dataset_grades.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "grade_icm", "grade_te"])
        writer.writerows([r["video"], r["grade_icm"], r["grade_te"]] for r in results)
    if quirks:
        inject_quirks(out, results, seed, planes)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output root (DIR/embryo_dataset/...)")
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--size", type=int, default=500, help="frame side in pixels (real: 500)")
    parser.add_argument("--focal-planes", nargs="+", default=["F0"], help="'all' or plane names, e.g. F0 F15")
    parser.add_argument("--frames-per-video", type=int, default=None, help="default: 300-420 (realistic)")
    parser.add_argument("--quirks", action="store_true", help="inject the real release's defects")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    planes = "all" if args.focal_planes == ["all"] else args.focal_planes
    out = generate_dataset(args.out, args.videos, args.seed, args.size, planes, args.frames_per_video,
                           args.quirks, args.workers)
    print(out)


if __name__ == "__main__":
    main()
