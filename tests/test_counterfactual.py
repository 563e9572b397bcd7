"""Counterfactual frames (data/synthetic/counterfactual.py): exact redrawing, removal only near the structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from embryo_xai.data.reader import read_phases
from embryo_xai.data.stages import PHASES
from embryo_xai.data.synthetic import counterfactual as cf
from embryo_xai.data.synthetic import generate_dataset
from embryo_xai.data.synthetic.generate import video_names

#: changes of a removal spread by the focus blur, the relief filter and JPEG's 8x8 blocks (a changed pixel can
#: alter its whole block, up to 11 px away diagonally): this far (px at 128 px) and no farther from the structure
#: (measured: at most 16.1 px over 169 removals of a 3-video set)
REACH = 17


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(root, videos=3, seed=7, size=128, frames_per_video=60, workers=1, progress=False)


def frames_by_stage(root: Path) -> dict[str, tuple[str, int]]:
    """One (video, RUN) per annotated phase, the middle of its first span."""
    found = {}
    for video in video_names(3, 7):
        for label, first, last in read_phases(root / "embryo_dataset_annotations" / f"{video}_phases.csv"):
            found.setdefault(PHASES[label], (video, (first + last) // 2))
    return found


def test_original_is_the_stored_frame_and_removals_stay_near_their_structure(synthetic: Path) -> None:
    by_stage = frames_by_stage(synthetic)
    wanted = [p for p in ("tPB2", "tPNa", "t4", "tM", "tB", "tHB") if p in by_stage]
    assert len(wanted) >= 4, by_stage.keys()
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
    assert {"zona", "blastomere"} <= kinds_seen and len(kinds_seen) >= 5


def test_defining_structures_follow_the_stage(synthetic: Path) -> None:
    by_stage = frames_by_stage(synthetic)
    pronuclei = cf.render_many(synthetic, [by_stage["tPNa"]])[0]
    assert [n for n, d in zip(pronuclei.names, pronuclei.defining) if d] == ["pronucleus_1", "pronucleus_2"]


def test_save_load_round_trip_and_errors(synthetic: Path, tmp_path: Path) -> None:
    video = video_names(3, 7)[0]
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
    video = video_names(3, 7)[1]
    cf.main(["--root", str(synthetic), "--frames", f"{video}:10", "--out", str(tmp_path / "x.npz")])
    assert f"{video} RUN10" in capsys.readouterr().out and cf.load(tmp_path / "x.npz")[0].run == 10
