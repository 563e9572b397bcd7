"""A synthetic data set: video names, one worker per video (``render_video``) and the set-level files."""

from __future__ import annotations

import csv
import json
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from embryo_xai.data.layout import (
    ANNOTATIONS_DIR,
    FOCAL_PLANES,
    GRADES_FILE,
    GRADES_HEADER,
    MASKS_DIR,
    TIME_ELAPSED_DIR,
    TIME_ELAPSED_HEADER,
    frame_name,
    phases_path,
    plane_dir,
    time_elapsed_path,
)
from embryo_xai.data.stages import NUM_CLASSES
from embryo_xai.data.synthetic.camera import PLANE_DEFOCUS, Camera, illumination_lut
from embryo_xai.data.synthetic.drawing import draw_frame
from embryo_xai.data.synthetic.quirks import inject_quirks
from embryo_xai.data.synthetic.simulator import EmbryoSimulator, FrameState
from embryo_xai.data.synthetic.timeline import annotation_rows, plan_timeline

#: JPEG quality of the frames (the release's files are JPEGs of about this quality)
JPEG_QUALITY = 85
#: The generator's settings, written at the data set's root: what a frame needs to be redrawn
RECORD_FILE = "synthetic.json"


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


@dataclass(frozen=True)
class FramePlan:
    """Everything random about one frame: the embryo's state and the exposure of each plane."""

    run: int
    state: FrameState
    blur: float  # focus blur (Gaussian sigma at 500 px), before each plane's own defocus
    lut: np.ndarray  # the frame's illumination curve
    noise: dict[str, tuple[int, int, int]]  # plane -> the camera's noise bank and offsets


class VideoPlan:
    """One video's random draws in their fixed order, shared by the rendering of the data set and the
    redrawing of single frames (``counterfactual.py``): iterate ``frames()`` once, then ``finish()``."""

    def __init__(self, task: VideoTask) -> None:
        seeds = np.random.SeedSequence([task.seed, task.index]).spawn(3)
        self.rng, self.plane_rng, self.frame_rng = (np.random.default_rng(seed) for seed in seeds)
        self.task = task
        self.events, self.frame_hours, self.stages, self.labelled = plan_timeline(self.rng, task.frames_per_video)
        self.embryo = EmbryoSimulator(self.rng, task.size, self.events)
        self.video_gain, self.video_gamma = self.rng.uniform(0.8, 1.2), self.rng.uniform(0.75, 1.3)
        self.video_blur = self.rng.uniform(0.2, 1.2)
        self.camera = Camera(self.rng, task.size, noise=self.rng.uniform(0.005, 0.015))

    def frames(self) -> Iterator[FramePlan]:
        """Each frame's plan, in time order (the embryo advances: one pass only)."""
        rng = self.rng
        for run, hours in enumerate(self.frame_hours, start=1):
            # one generator feeds the embryo, the blur, the illumination and the F0 noise, in this order
            state = self.embryo.advance(float(hours))
            unsharp = self.frame_rng.random() < 0.08
            blur = self.video_blur * (rng.uniform(2.0, 4.0) if unsharp else rng.uniform(0.7, 1.3))
            lut = illumination_lut(rng, self.video_gain, self.video_gamma)
            noise = {plane: self.camera.draw_noise(rng if plane == "F0" else self.plane_rng)
                     for plane in self.task.planes}
            yield FramePlan(run, state, float(blur), lut, noise)

    def expose(self, frame: FramePlan, plane: str, scene: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
        """The frame of ``plane`` from a drawn scene."""
        plane_blur = float(np.hypot(frame.blur, PLANE_DEFOCUS[plane]) * self.task.size / 500.0)
        return self.camera.expose(scene, box, frame.noise[plane], plane_blur, frame.lut)


def render_video(task: VideoTask) -> dict:
    """Render one video into every requested plane, its mask, annotations and times (runs in a worker)."""
    plan = VideoPlan(task)
    rng, stages, labelled, frame_hours = plan.rng, plan.stages, plan.labelled, plan.frame_hours
    folders = {plane: plane_dir(task.out, plane) / task.name for plane in task.planes}
    mask_folder = task.out / MASKS_DIR / task.name
    for folder in [*folders.values(), mask_folder]:
        folder.mkdir(parents=True, exist_ok=True)
    for frame in plan.frames():
        scene, mask, box = draw_frame(plan.embryo, frame.state)
        for plane, folder in folders.items():
            plan.expose(frame, plane, scene, box).save(folder / frame_name(task.name, frame.run), quality=JPEG_QUALITY)
        Image.fromarray(mask).save(mask_folder / frame_name(task.name, frame.run, ".png"), compress_level=3)

    rows = annotation_rows(stages, labelled)
    phases_path(task.out, task.name).write_text("".join(f"{phase},{first},{last}\n" for phase, first, last in rows))
    hpi_offset = rng.uniform(2.5, 4.5)  # tPB2 happens a few hours after insemination
    time_elapsed_path(task.out, task.name).write_text(
        ",".join(TIME_ELAPSED_HEADER) + "\n"
        + "".join(f"{k},{h + hpi_offset:.2f}\n" for k, h in enumerate(frame_hours, 1)))
    grades = rng.choice(["A", "B", "C"], size=2, p=[0.3, 0.45, 0.25])
    return {"video": task.name, "grade_icm": str(grades[0]), "grade_te": str(grades[1]),
            "stage_counts": np.bincount(stages[labelled], minlength=NUM_CLASSES).tolist(), "rows": rows}


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
    for folder in (ANNOTATIONS_DIR, TIME_ELAPSED_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    tasks = [VideoTask(i, name, seed, out, size, planes, frames_per_video)
             for i, name in enumerate(video_names(videos, seed))]
    bar = dict(total=len(tasks), unit="video", desc="synthetic videos", disable=not progress)
    if workers > 1:
        with multiprocessing.get_context().Pool(workers) as pool:
            results = list(tqdm(pool.imap(render_video, tasks), **bar))
    else:
        results = [render_video(task) for task in tqdm(tasks, **bar)]
    with open(out / GRADES_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GRADES_HEADER)
        writer.writerows([r["video"], r["grade_icm"], r["grade_te"]] for r in results)
    if quirks:
        inject_quirks(out, results, seed, planes)
    # last: a set with this record is complete (counterfactual.py redraws its frames from it)
    (out / RECORD_FILE).write_text(json.dumps({"generator": "embryo_xai.data.synthetic", "videos": videos,
                                               "seed": seed, "size": size, "focal_planes": list(planes),
                                               "frames_per_video": frames_per_video, "quirks": quirks}, indent=1))
    return out
