"""The simulated embryo: its per-video appearance and the state that evolves from frame to frame.

Every random number of a frame's embryo is drawn in ``EmbryoSimulator.advance`` (position drift, cell
divisions and jitter, intensity jitter) and drawing (``drawing.py``) draws none: a frame's pixels follow
from its ``FrameState`` alone, and the order of draws from the video's generator is fixed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from embryo_xai.data.stages import NUM_CLASSES
from embryo_xai.data.stages import STAGE_TO_LABEL as STAGE
from embryo_xai.data.synthetic.timeline import smoothstep

# Few knots keep the intensity mapping smooth (no stretched texture inside large uniform regions).
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 9)


@dataclass(frozen=True)
class FrameState:
    """What one frame shows of the embryo; drawing it consumes no random number."""

    hours: float
    stage: int
    progress: float  # 0 -> 1 through the stage (sHB: through its first 8 hours)
    outer: float  # zona radius, outer edge (grows during expansion)
    inner: float  # zona radius, inner edge
    centre: np.ndarray  # (x, y) of the embryo in the frame: start position plus drift
    cells: np.ndarray  # (N, 5) a copy of the cells: x, y, radius, elongation, axis angle
    intensity_jitter: np.ndarray  # (2,) this frame's shift of the embryo's intensity mean and spread


class EmbryoSimulator:
    """One embryo: fixed per-video appearance plus a cell state that evolves frame after frame.

    ``advance`` moves the embryo to the next frame's time and returns that frame's ``FrameState``;
    ``drawing.draw_frame`` turns a state into pixels without touching the generator.
    """

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
        # The embryo's intensity distribution is pinned to this per-video one (see drawing.equalise).
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
        self.mass_bumps = rng.uniform(0, 2 * np.pi, size=3)  # unused; drawn so later numbers stay the same

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

    @property
    def zygote_radius(self) -> float:
        """Radius of the one-cell embryo, inside the zona as first drawn (before any expansion)."""
        return 0.83 * self.zona_outer - self.zona_thickness

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Rotate embryo coordinates (N,2) by the video's rotation (image offsets from the centre)."""
        cos, sin = np.cos(self.rotation), np.sin(self.rotation)
        return np.stack([local[:, 0] * cos - local[:, 1] * sin, local[:, 0] * sin + local[:, 1] * cos], 1)

    def advance(self, hours: float) -> FrameState:
        """Move the embryo to time ``hours`` and return what the frame shows; call once per frame, in time order."""
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
        if stage <= STAGE["sM"]:  # cells divide and move until compaction ends, then stay put
            self.step_cells(hours, self.zygote_radius, self.zona_outer - self.zona_thickness)
        jitter = rng.normal(0, 0.02, size=2)
        return FrameState(hours, stage, progress, outer, inner, self.center0 + self.drift, self.cells.copy(), jitter)
