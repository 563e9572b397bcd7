"""``python -m embryo_xai.data.synthetic``: write a synthetic data set (arguments: ``--help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from embryo_xai.data import synthetic
from embryo_xai.data.synthetic.generate import generate_dataset


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, generate the set and print its root."""
    parser = argparse.ArgumentParser(prog="python -m embryo_xai.data.synthetic",
                                     description=synthetic.__doc__.split("\n\n")[0],
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
