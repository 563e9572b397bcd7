"""The on-disk format of the embryo time-lapse data set, defined once for its reader and its writer.

The real download (Zenodo DOI 10.5281/zenodo.7912264) and the synthetic generator's output share it::

    embryo_dataset/<video>/<video>_RUN<n>.jpeg           central focal plane F0
    embryo_dataset_F<z>/<video>/<video>_RUN<n>.jpeg      the other focal planes
    embryo_dataset_annotations/<video>_phases.csv        header-less rows phase,first_RUN,last_RUN (inclusive)
    embryo_dataset_time_elapsed/<video>_timeElapsed.csv  header frame_index,time (RUN, hours)
    embryo_dataset_grades.csv                            header video,grade_icm,grade_te
    embryo_dataset_masks/<video>/<video>_RUN<n>.png      synthetic only: the stage's structures

Frames are identified by the RUN number in their file name, never by their position in a listing.
"""

from __future__ import annotations

import re
from pathlib import Path

FOCAL_PLANES: tuple[str, ...] = ("F-45", "F-30", "F-15", "F0", "F15", "F30", "F45")
FRAMES_DIR = "embryo_dataset"  # F0; every other plane adds its name: embryo_dataset_F15
ANNOTATIONS_DIR = "embryo_dataset_annotations"
TIME_ELAPSED_DIR = "embryo_dataset_time_elapsed"
MASKS_DIR = "embryo_dataset_masks"
GRADES_FILE = "embryo_dataset_grades.csv"
GRADES_HEADER: tuple[str, ...] = ("video", "grade_icm", "grade_te")
TIME_ELAPSED_HEADER: tuple[str, str] = ("frame_index", "time")
# A frame file: .jpeg or .jpg, in any case.
FRAME_PATTERN = re.compile(r"_RUN(\d+)\.jpe?g$", re.IGNORECASE)


def plane_dir(root: Path, focal_plane: str = "F0") -> Path:
    """Folder holding one sub-folder of frames per video for ``focal_plane``."""
    if focal_plane not in FOCAL_PLANES:
        raise ValueError(f"unknown focal plane {focal_plane!r}; choose one of {', '.join(FOCAL_PLANES)}")
    return root / (FRAMES_DIR if focal_plane == "F0" else f"{FRAMES_DIR}_{focal_plane}")


def frame_name(video: str, run: int, suffix: str = ".jpeg") -> str:
    """File name of frame ``run`` of ``video`` (a mask: ``suffix=".png"``; a glob: ``".*"``)."""
    return f"{video}_RUN{run}{suffix}"


def frame_run(path: Path) -> int | None:
    """RUN number of a frame file name, or None if the name is not a frame."""
    match = FRAME_PATTERN.search(path.name)
    return int(match.group(1)) if match else None


def phases_path(root: Path, video: str) -> Path:
    """The phase annotations of ``video``."""
    return root / ANNOTATIONS_DIR / f"{video}_phases.csv"


def time_elapsed_path(root: Path, video: str) -> Path:
    """The hours since insemination of every frame of ``video``."""
    return root / TIME_ELAPSED_DIR / f"{video}_timeElapsed.csv"
