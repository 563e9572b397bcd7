"""Counterfactual frames (data/synthetic/counterfactual.py): exact redrawing, removal only near the structure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from embryo_xai.data.reader import read_phases
from embryo_xai.data.stages import PHASES
from embryo_xai.data.synthetic import counterfactual as cf
from embryo_xai.data.synthetic import generate_dataset
from embryo_xai.data.synthetic.generate import RECORD_FILE, video_names

#: changes of a removal spread by the focus blur, the relief filter and JPEG's 8x8 blocks (a changed pixel can
#: alter its whole block, up to 11 px away diagonally): this far (px at 128 px) and no farther from the structure
#: (measured: at most 16.1 px over 169 removals of a 3-video set)
REACH = 17
#: a seed whose 3 videos of 60 frames show every phase the tests remove structures at (tPB2 to tHB)
SEED = 10


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(root, videos=3, seed=SEED, size=128, frames_per_video=60, workers=1, progress=False)


def frames_by_stage(root: Path) -> dict[str, tuple[str, int]]:
    """One (video, RUN) per annotated phase, the middle of its first span."""
    found = {}
    for video in video_names(3, SEED):
        for label, first, last in read_phases(root / "embryo_dataset_annotations" / f"{video}_phases.csv"):
            found.setdefault(PHASES[label], (video, (first + last) // 2))
    return found


def test_original_is_the_stored_frame_and_removals_stay_near_their_structure(synthetic: Path) -> None:
    by_stage = frames_by_stage(synthetic)
    # zygote, pronuclei, cleavage, morula, cavitation, blastocyst, hatching
    wanted = ["tPB2", "tPNa", "t4", "tM", "tSB", "tB", "tHB"]
    sets = cf.render_many(synthetic, [by_stage[p] for p in wanted])
    kinds_seen = set()
    for phase, c in zip(wanted, sets):
        assert c.stage == PHASES.index(phase)
        assert "zona" in c.names and c.defining.any()
        for k, name in enumerate(c.names):
            changed = c.removed[k] != c.original
            assert changed.any(), f"{phase}: removing {name} changed nothing"
            near = distance_transform_edt(~c.masks[k]) <= REACH
            assert not (changed & ~near).any(), f"{phase}: removing {name} changed pixels far from it"
            kinds_seen.add(c.kinds[k])
    assert kinds_seen == {"zona", "polar_body", "pronucleus", "blastomere", "compacted_mass", "cavity",
                          "trophectoderm", "inner_cell_mass", "hatching_bulge"}


def test_defining_structures_follow_the_stage(synthetic: Path) -> None:
    by_stage = frames_by_stage(synthetic)
    pronuclei = cf.render_many(synthetic, [by_stage["tPNa"]])[0]
    assert [n for n, d in zip(pronuclei.names, pronuclei.defining) if d] == ["pronucleus_1", "pronucleus_2"]


def test_save_load_round_trip_and_errors(synthetic: Path, tmp_path: Path) -> None:
    video = video_names(3, SEED)[0]
    sets = cf.render_many(synthetic, [(video, 3), (video, 40)])
    cf.save(tmp_path / "c.npz", sets)
    back = cf.load(tmp_path / "c.npz")
    for a, b in zip(sets, back):
        assert (a.video, a.run, a.names, a.kinds) == (b.video, b.run, b.names, b.kinds)
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("original", "defining", "masks", "removed"))
    with pytest.raises(ValueError, match="no frame RUN999"):
        cf.render_many(synthetic, [(video, 999)])
    with pytest.raises(ValueError, match="not one of"):
        cf.render_many(synthetic, [("D2000.01.01_S0001_I100_WELL1", 3)])
    assert cf.why_not_synthetic(synthetic) is None
    assert "no generator record" in cf.why_not_synthetic(tmp_path)
    frame = synthetic / "embryo_dataset" / video / f"{video}_RUN3.jpeg"
    original = frame.read_bytes()
    frame.write_bytes(original[:-10])
    try:
        with pytest.raises(ValueError, match="differs from its redrawing"):
            cf.render_many(synthetic, [(video, 3)])
    finally:
        frame.write_bytes(original)


def test_command_line(synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = video_names(3, SEED)[1]
    cf.main(["--root", str(synthetic), "--frames", f"{video}:10", "--out", str(tmp_path / "x.npz")])
    assert f"{video} RUN10" in capsys.readouterr().out and cf.load(tmp_path / "x.npz")[0].run == 10


def test_generated_data_set_is_unchanged_by_the_replayable_draws(tmp_path: Path) -> None:
    """The draws moved into ``generate.VideoPlan`` (shared with the redrawing) in the same order: the data set
    is byte for byte what the generator wrote before (digest of every file but the record, with planes and
    quirks, computed with commit bdb13ed, the generator before the move; Pillow's libjpeg writes the JPEGs)."""
    root = generate_dataset(tmp_path / "set", videos=4, seed=11, size=64, frames_per_video=20,
                            focal_planes=("F0", "F15"), quirks=True, workers=1, progress=False)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != RECORD_FILE):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == "818385ba2ad41a78774e580925b88cd638dfd4850c0ff22f6e15f2562b056313"
