"""A synthetic data set: video names, one worker per video (``render_video``) and the set-level files."""

from __future__ import annotations

import csv
import multiprocessing
from collections.abc import Sequence
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
from embryo_xai.data.synthetic.simulator import EmbryoSimulator
from embryo_xai.data.synthetic.timeline import annotation_rows, plan_timeline


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
    mask_folder = task.out / MASKS_DIR / task.name
    for folder in [*folders.values(), mask_folder]:
        folder.mkdir(parents=True, exist_ok=True)
    for run, hours in enumerate(frame_hours, start=1):
        # one generator feeds the embryo, the blur, the illumination and the F0 noise, in this order
        scene, mask, box = draw_frame(embryo, embryo.advance(float(hours)))
        blur = video_blur * (rng.uniform(2.0, 4.0) if frame_rng.random() < 0.08 else rng.uniform(0.7, 1.3))
        lut = illumination_lut(rng, video_gain, video_gamma)
        for plane, folder in folders.items():
            plane_blur = float(np.hypot(blur, PLANE_DEFOCUS[plane]) * s)
            frame = camera.expose(scene, box, rng if plane == "F0" else plane_rng, plane_blur, lut)
            frame.save(folder / frame_name(task.name, run), quality=85)
        Image.fromarray(mask).save(mask_folder / frame_name(task.name, run, ".png"), compress_level=3)

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
    return out
