"""Synthetic embryo time-lapse videos in the real data set's on-disk layout (docs/architecture.md, The data format).

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

Modules: ``timeline`` (events, recording window), ``simulator`` (the embryo and its per-frame
``FrameState``), ``canvas`` and ``drawing`` (a state to a clean scene and mask), ``camera`` (defocus,
noise, illumination), ``quirks`` (the release's defects), ``generate`` (videos and the set);
the on-disk names come from ``embryo_xai.data.layout``.
"""

from embryo_xai.data.synthetic.camera import PLANE_DEFOCUS, Camera, illumination_lut
from embryo_xai.data.synthetic.drawing import MASK_CODES, STAGE_MASK_STRUCTURES, draw_frame
from embryo_xai.data.synthetic.generate import VideoTask, generate_dataset, render_video, video_names
from embryo_xai.data.synthetic.quirks import inject_quirks
from embryo_xai.data.synthetic.simulator import EmbryoSimulator, FrameState
from embryo_xai.data.synthetic.timeline import annotation_rows, plan_timeline

__all__ = [
    "MASK_CODES", "PLANE_DEFOCUS", "STAGE_MASK_STRUCTURES", "Camera", "EmbryoSimulator", "FrameState", "VideoTask",
    "annotation_rows", "draw_frame", "generate_dataset", "illumination_lut", "inject_quirks", "plan_timeline",
    "render_video", "video_names",
]
