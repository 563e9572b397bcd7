"""Reader of the public embryo time-lapse data set's on-disk format (docs/architecture.md, The data format).

The same reader serves the real download and the synthetic generator's output; both take the
names of folders and files from ``layout``. Frames are labelled by the RUN number in their file
name, never by their position in a directory listing.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from embryo_xai.data.layout import TIME_ELAPSED_HEADER, frame_run, phases_path, plane_dir
from embryo_xai.data.stages import NUM_CLASSES, PHASE_TO_LABEL, STAGES

log = logging.getLogger(__name__)

JPEG_END = b"\xff\xd9"
GENERATE_HINT = (
    "Generate the synthetic set with `python -m embryo_xai.data.synthetic --out {root} --videos 40 --seed 0`, "
    "or point data.root at the extracted real data set (Zenodo DOI 10.5281/zenodo.7912264)."
)


class DatasetFormatError(ValueError):
    """A file of the data set does not follow the documented format."""


@dataclass(frozen=True)
class Frame:
    video: str
    run: int
    label: int
    path: Path


@dataclass
class DatasetIndex:
    """Every labelled, readable frame of one focal plane, plus what was left out and why."""

    root: Path
    focal_plane: str
    frames: list[Frame] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    skipped_videos: list[dict[str, str]] = field(default_factory=list)
    unlabelled_frames: int = 0
    missing_annotated_frames: int = 0

    @property
    def videos(self) -> list[str]:
        return sorted({f.video for f in self.frames})

    def stage_counts(self) -> dict[str, int]:
        counts = Counter(f.label for f in self.frames)
        return {stage: counts.get(i, 0) for i, stage in enumerate(STAGES)}


def read_phases(path: Path) -> list[tuple[int, int, int]]:
    """Parse ``<video>_phases.csv``: header-less ``phase,first,last`` rows (inclusive RUN numbers).

    Returns ``(label, first_run, last_run)`` rows. Any malformed row raises
    :class:`DatasetFormatError` naming the file and line.
    """
    rows: list[tuple[int, int, int]] = []
    with open(path, newline="") as handle:
        for line_no, fields in enumerate(csv.reader(handle), start=1):
            if not fields or all(not f.strip() for f in fields):
                continue
            where = f"{path}:{line_no}"
            if len(fields) != 3:
                raise DatasetFormatError(f"{where}: expected 'phase,first_frame,last_frame', got {fields!r}")
            phase, first_txt, last_txt = (f.strip() for f in fields)
            if phase not in PHASE_TO_LABEL:
                raise DatasetFormatError(f"{where}: unknown phase {phase!r}")
            try:
                first, last = int(first_txt), int(last_txt)
            except ValueError:
                raise DatasetFormatError(f"{where}: frame numbers must be integers, got {fields!r}") from None
            if first < 0 or last < first:
                raise DatasetFormatError(f"{where}: invalid frame range {first}..{last}")
            if rows and (PHASE_TO_LABEL[phase] <= rows[-1][0] or first <= rows[-1][2]):
                raise DatasetFormatError(f"{where}: phase {phase} is out of order or overlaps the previous one")
            rows.append((PHASE_TO_LABEL[phase], first, last))
    return rows


def read_time_elapsed(path: Path) -> dict[int, float]:
    """``<video>_timeElapsed.csv`` (header ``frame_index,time``) -> {RUN: hours}."""
    run_key, time_key = TIME_ELAPSED_HEADER
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {run_key, time_key} <= set(reader.fieldnames):
            raise DatasetFormatError(f"{path}:1: expected header '{run_key},{time_key}'")
        return {int(row[run_key]): float(row[time_key]) for row in reader}


def jpeg_problem(path: Path, decode: bool = False) -> str | None:
    """Why a frame cannot be used, or None. The cheap check reads the end-of-image marker,
    which catches the truncated JPEGs of the public release; ``decode`` decodes fully."""
    try:
        size = path.stat().st_size
        if size < 4:
            return "empty file"
        with open(path, "rb") as handle:
            head = handle.read(2)
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip(b"\x00")
        if head != b"\xff\xd8":
            return "not a JPEG"
        if not tail.endswith(JPEG_END):
            return "truncated JPEG (no end-of-image marker)"
        if decode:
            from PIL import Image

            with Image.open(path) as image:
                image.load()
    except OSError as error:
        return f"unreadable: {error}"
    return None


def video_frames(video_dir: Path) -> tuple[dict[int, Path], int]:
    """{RUN: path} for one video folder. Frames directly in the folder win; a duplicate
    ``F0/`` sub-folder of the same frames (seen in the public release) is used only when the
    folder itself holds none, so nothing is counted twice. Also returns duplicates ignored."""
    frames: dict[int, Path] = {}
    duplicates = 0
    candidates = sorted(video_dir.iterdir())
    nested = [p for p in candidates if p.is_dir()]
    for path in [p for p in candidates if p.is_file()] + [f for d in nested for f in sorted(d.iterdir())]:
        run = frame_run(path)
        if run is None:
            continue
        if run in frames:
            duplicates += 1
            continue
        frames[run] = path
    return frames, duplicates


def scan_dataset(root: str | Path, focal_plane: str = "F0", verify: str = "tail") -> DatasetIndex:
    """Index every labelled, readable frame of ``focal_plane`` under ``root``.

    ``verify``: ``"tail"`` (cheap end-of-image check, default), ``"decode"`` (full decode),
    or ``"none"``. Videos without annotations are skipped with a warning; unreadable frames
    are skipped and counted; annotations naming missing frames are ignored.
    """
    root = Path(root)
    frames_root = plane_dir(root, focal_plane)
    if not frames_root.is_dir() or not any(frames_root.iterdir()):
        raise FileNotFoundError(f"no frames found at {frames_root}. " + GENERATE_HINT.format(root=root))
    index = DatasetIndex(root=root, focal_plane=focal_plane)
    for video_dir in sorted(p for p in frames_root.iterdir() if p.is_dir()):
        video = video_dir.name
        phases_csv = phases_path(root, video)
        if not phases_csv.is_file():
            log.warning("skipping video %s: no annotation file %s", video, phases_csv)
            index.skipped_videos.append({"video": video, "reason": f"no annotation file {phases_csv.name}"})
            continue
        phases = read_phases(phases_csv)
        frames, _ = video_frames(video_dir)
        label_of_run = {run: label for label, first, last in phases for run in range(first, last + 1)}
        index.missing_annotated_frames += sum(run not in frames for run in label_of_run)
        kept = 0
        for run in sorted(frames):
            path = frames[run]
            if run not in label_of_run:
                index.unlabelled_frames += 1
                continue
            problem = None if verify == "none" else jpeg_problem(path, decode=verify == "decode")
            if problem:
                index.skipped_files.append({"path": str(path), "reason": problem})
                continue
            index.frames.append(Frame(video, run, label_of_run[run], path))
            kept += 1
        if kept == 0:
            index.skipped_videos.append({"video": video, "reason": "no labelled readable frame"})
    if not index.frames:
        raise FileNotFoundError(f"no labelled frame found under {root}. " + GENERATE_HINT.format(root=root))
    if index.skipped_files:
        log.warning("skipped %d unreadable frame file(s) under %s", len(index.skipped_files), root)
    assert all(0 <= f.label < NUM_CLASSES for f in index.frames)
    return index
