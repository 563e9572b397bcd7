"""``python -m embryo_xai.data.summary --root DIR``: JSON summary of a data set on stdout.

The quick way to check a download: videos, labelled frames per stage, and every skipped
file or video with its reason.
"""

from __future__ import annotations

import argparse
import json
import sys

from embryo_xai.data.layout import FOCAL_PLANES
from embryo_xai.data.reader import scan_dataset


def summarize(root: str, focal_plane: str = "F0", verify: str = "tail") -> dict:
    index = scan_dataset(root, focal_plane=focal_plane, verify=verify)
    return {
        "root": str(index.root),
        "focal_plane": focal_plane,
        "videos": len(index.videos),
        "labelled_frames": len(index.frames),
        "labelled_frames_per_stage": index.stage_counts(),
        "unlabelled_frames": index.unlabelled_frames,
        "annotated_frames_without_image": index.missing_annotated_frames,
        "skipped_files": index.skipped_files,
        "skipped_videos": index.skipped_videos,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder holding embryo_dataset/, embryo_dataset_annotations/ …")
    parser.add_argument("--focal-plane", default="F0", choices=FOCAL_PLANES)
    parser.add_argument("--verify", default="tail", choices=("tail", "decode", "none"),
                        help="how to check JPEGs: end-of-image marker (fast), full decode, or not at all")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.root, args.focal_plane, args.verify)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
