"""The public release's known defects, reproduced in a synthetic set so the reader's handling is tested."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embryo_xai.data.layout import MASKS_DIR, frame_name, phases_path, plane_dir

QUIRKS_FILE = "quirks.json"  # what was injected where; not part of the real layout


def inject_quirks(out: Path, results: list[dict], seed: int, planes: Sequence[str]) -> dict:
    """Reproduce the public release's known defects in four distinct videos and describe them."""
    if len(results) < 4:
        raise ValueError("--quirks needs at least 4 videos (one per quirk)")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xBAD])).permutation(len(results))
    by_last_phase = [i for i in order if results[i]["rows"] and
                     results[i]["rows"][-1][2] - results[i]["rows"][-1][1] >= 2]
    missing = by_last_phase[0] if by_last_phase else int(order[0])
    truncated, duplicated, unannotated = [int(i) for i in order if i != missing][:3]
    f0 = plane_dir(out, "F0")

    video = results[truncated]
    phase, first, last = video["rows"][len(video["rows"]) // 2]
    run = (first + last) // 2
    path = f0 / video["video"] / frame_name(video["video"], run)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    quirks: dict = {"truncated_jpeg": [{"video": video["video"], "run": run, "phase": phase,
                                        "path": str(path.relative_to(out))}]}

    # the release holds some videos twice: the frames, and the same frames again in a sub-folder F0/
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
        for folder in [plane_dir(out, p) for p in planes] + [out / MASKS_DIR]:
            for frame in (folder / video["video"]).glob(frame_name(video["video"], r, ".*")):
                frame.unlink()
    quirks["missing_frames"] = [{"video": video["video"], "phase": phase, "runs": runs}]

    video = results[unannotated]["video"]
    phases_path(out, video).unlink()
    quirks["missing_annotations"] = [{"video": video}]
    (out / QUIRKS_FILE).write_text(json.dumps(quirks, indent=2) + "\n")
    return quirks
