"""Drawing one frame of the simulated embryo: clean scene and structure mask from a ``FrameState``.

Nothing here draws a random number: the same embryo and state always give the same pixels.
"""

from __future__ import annotations

import numpy as np

from embryo_xai.data.stages import STAGE_TO_LABEL as STAGE
from embryo_xai.data.synthetic.canvas import Canvas
from embryo_xai.data.synthetic.simulator import QUANTILE_LEVELS, EmbryoSimulator, FrameState
from embryo_xai.data.synthetic.timeline import smoothstep

MASK_CODES: dict[str, int] = {"polar_body": 1, "pronucleus": 2, "blastomere": 3, "compacted_mass": 4,
                              "cavity": 5, "zona": 6, "inner_cell_mass": 7, "hatching_bulge": 8}
# Structures that define each stage (label order): only these are kept in the frame's mask.
STAGE_MASK_STRUCTURES: tuple[tuple[str, ...], ...] = (
    ("polar_body",), ("pronucleus",), ("blastomere",),
    *((("blastomere",),) * 8),
    ("compacted_mass",), ("cavity",), ("cavity", "inner_cell_mass"), ("cavity", "zona"), ("hatching_bulge",),
)


class Instances:
    """The structure instances a drawing shows (name, kind) with their labels, and the one left out."""

    def __init__(self, removed: str | None = None) -> None:
        self.removed = removed
        self.names: list[str] = []
        self.kinds: list[str] = []

    def label(self, name: str, kind: str) -> int:
        """The instance's label (1-based) in the label image; registered on first use."""
        if name not in self.names:
            self.names.append(name)
            self.kinds.append(kind)
        return self.names.index(name) + 1

    def keep(self, name: str) -> bool:
        return name != self.removed


def draw_frame(embryo: EmbryoSimulator, state: FrameState) -> tuple[np.ndarray, np.ndarray,
                                                                    tuple[int, int, int, int]]:
    """Clean scene (float32 in ~[0, 1]), structure mask (uint8) and the box (left, top, right, bottom)
    outside which the frame is plain background."""
    full, mask, _, box, _ = _draw(embryo, state, None, None)
    return full, mask, box


def draw_structures(embryo: EmbryoSimulator, state: FrameState, removed: str | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], Instances]:
    """The frame's clean scene with the structure instance ``removed`` left out (what lies behind it drawn
    instead), the instance labels of the frame *with* every structure (int16, 0 = none; label k is
    ``instances.names[k - 1]``), the box and the instances. Nothing else changes: the intensity mapping
    (``equalise``) is the complete frame's."""
    instances = Instances()
    complete, _, labels, box, source = _draw(embryo, state, instances, None)
    if removed is None:
        return complete, labels, box, instances
    if removed not in instances.names:
        raise ValueError(f"no structure {removed!r} in this frame; it shows {', '.join(instances.names)}")
    scene = _draw(embryo, state, Instances(removed), source)[0]
    return scene, labels, box, instances


def _draw(embryo: EmbryoSimulator, state: FrameState, instances: Instances | None, source: np.ndarray | None,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, int, int, int], np.ndarray]:
    """(scene, mask, labels or None, box, equalisation quantiles); labels and removal with ``instances``."""
    s, size, stage = embryo.scale, embryo.size, state.stage
    outer, inner = state.outer, state.inner
    cx, cy = state.centre
    # only the box around the embryo (and the hatching bulge) is drawn: the rest is background
    half = int(outer * (1.62 if stage == STAGE["sHB"] else 1.1)) + 4
    r0, r1 = max(0, int(cy) - half), min(size, int(cy) + half)
    c0, c1 = max(0, int(cx) - half), min(size, int(cx) + half)
    xs = np.arange(c0, c1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(r0, r1, dtype=np.float32) + 0.5 - cy
    full = embryo.background.copy()
    mask_full = np.zeros((size, size), np.uint8)
    scene, mask = full[r0:r1, c0:c1], mask_full[r0:r1, c0:c1]
    labels_full = None if instances is None else np.zeros((size, size), np.int16)
    labels = None if labels_full is None else labels_full[r0:r1, c0:c1]
    instances = instances or Instances()
    pad, oy, ox = embryo.texture_pad, int(round(cy - embryo.center0[1])), int(round(cx - embryo.center0[0]))
    texture = embryo.texture[pad + r0 - oy: pad + r1 - oy, pad + c0 - ox: pad + c1 - ox]
    canvas = Canvas(xs, ys, scene, mask, labels)
    radial = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)

    # perivitelline space and zona pellucida ring with dark edges
    inside = np.clip(inner - radial + 0.5, 0.0, 1.0)
    disk = np.clip(outer - radial + 0.5, 0.0, 1.0)
    ring = disk - inside
    scene += inside * (embryo.background_level + 0.03 - scene)
    if labels is not None:
        labels[ring > 0.5] = instances.label("zona", "zona")
    if instances.keep("zona"):
        scene += ring * (0.66 + 0.5 * texture - scene)
        edge = max(3.0 * s, 1.0)
        scene -= 0.22 * (np.clip(1 - np.abs(radial - outer) / edge, 0, 1)
                         + np.clip(1 - np.abs(radial - inner) / edge, 0, 1))
    if stage == STAGE["sEB"]:
        mask[ring > 0.5] = MASK_CODES["zona"]

    if stage <= STAGE["s9+"]:
        _draw_cleavage(embryo, state, canvas, texture, instances)
    else:
        _draw_blastocyst(embryo, state, canvas, texture, instances)

    # Hoffman-like relief: brighten one side of every edge, darken the other
    dy, dx = embryo.relief_dir[0] * embryo.relief_shift, embryo.relief_dir[1] * embryo.relief_shift
    relief = scene - np.roll(scene, (dy, dx), axis=(0, 1))
    relief[:dy] = 0.0  # np.roll wraps the opposite border around: no relief there
    relief[:, :dx] = 0.0
    # fade the relief out before the box border so the box leaves no seam in the background
    scene += relief * np.clip((half - 3 - radial) / (0.04 * outer), 0.0, embryo.relief_gain)
    source = equalise(embryo, state, scene, disk, source)
    keep = np.zeros(256, np.uint8)
    for name in STAGE_MASK_STRUCTURES[stage]:
        keep[MASK_CODES[name]] = MASK_CODES[name]
    mask[...] = keep[mask]
    return full, mask_full, labels_full, (c0, r0, c1, r1), source


def equalise(embryo: EmbryoSimulator, state: FrameState, scene: np.ndarray, disk: np.ndarray,
             source: np.ndarray | None = None) -> np.ndarray:
    """Map the embryo's pixels monotonically onto the video's intensity distribution (jittered per frame).

    Why: the mix of membranes, cytoplasm and cavity differs by stage, so the embryo's histogram would
    give the stage away; after this the histogram is the same at every stage while every structure
    keeps its place in the intensity order, i.e. stays visible. ``source``: the quantiles to map from
    (a counterfactual reuses its complete frame's, so the mapping does not change); returned.
    """
    if source is None:
        step = max(1, scene.shape[0] // 96)
        sample = scene[::step, ::step][disk[::step, ::step] > 0.99]
        source = np.quantile(sample, QUANTILE_LEVELS) + np.arange(len(QUANTILE_LEVELS)) * 1e-5
    jitter = state.intensity_jitter
    target = (embryo.embryo_mean + jitter[0]) + (embryo.embryo_spread + jitter[1]) * embryo.embryo_quantiles
    scene += disk * (np.interp(scene, source, target).astype(np.float32) - scene)
    return source


def _draw_cleavage(embryo: EmbryoSimulator, state: FrameState, canvas: Canvas, texture: np.ndarray,
                   instances: Instances) -> None:
    """Zygote with polar body and pronuclei, or the dividing blastomeres."""
    s, stage, progress, zygote_radius = embryo.scale, state.stage, state.progress, embryo.zygote_radius
    cells = state.cells.copy()
    if stage <= STAGE["sPNf"]:  # round zygote, elongating before the first cleavage
        cells[:, 3] = 1.12 + 0.2 * progress if stage == STAGE["sPNf"] else 1.0
    pos = embryo.to_image(cells[:, :2])
    a = cells[:, 2] * np.sqrt(cells[:, 3])
    b = cells[:, 2] / np.sqrt(cells[:, 3])
    ellipses = np.stack([pos[:, 0], pos[:, 1], a, b, cells[:, 4] + embryo.rotation], 1)
    count = len(ellipses)
    fill = np.full(count, 0.4)
    line = np.full(count, 0.3)
    codes = np.full(count, MASK_CODES["blastomere"])
    names = [f"blastomere_{k + 1}" for k in range(count)]
    if stage <= STAGE["s8"]:  # polar body in the perivitelline space
        pb_radius = 17.0 * s
        dist = min(zygote_radius + pb_radius * 0.8, state.inner - pb_radius * 0.9)
        angle = embryo.polar_body_angle
        pb = np.array([[dist * np.cos(angle), dist * np.sin(angle), pb_radius, pb_radius * 0.85, angle]])
        ellipses = np.concatenate([ellipses, pb])
        fill = np.append(fill, 0.52)
        line = np.append(line, 0.3 if stage <= STAGE["sPNf"] else 0.15)
        codes = np.append(codes, MASK_CODES["polar_body"])
        names.append("polar_body")
    labels = np.array([instances.label(name, "blastomere" if name.startswith("blastomere") else name)
                       for name in names])
    kept = np.array([instances.keep(name) for name in names])
    canvas.paint_cells(ellipses[kept], fill[kept], line[kept], codes[kept], texture, embryo.line_width,
                       labels[kept])
    if stage == STAGE["sPNa"]:
        _draw_pronuclei(embryo, state, canvas, instances)


def _draw_pronuclei(embryo: EmbryoSimulator, state: FrameState, canvas: Canvas, instances: Instances) -> None:
    """Two adjacent pronuclei with dark rims and nucleoli; they appear, then fade at the stage end."""
    progress, line_width = state.progress, embryo.line_width
    presence = min(1.0, progress / 0.08) * min(1.0, (1.0 - progress) / 0.08 + 0.15)
    radius = 0.24 * embryo.zygote_radius * (0.7 + 0.3 * min(1.0, progress / 0.2))
    axis = embryo.pronuclei_angle
    offset = 1.0 * radius * np.array([np.cos(axis), np.sin(axis)])
    centre = state.cells[0, :2]
    for number, sign in enumerate((1.0, -1.0), start=1):
        name = f"pronucleus_{number}"
        label = instances.label(name, "pronucleus")
        if not instances.keep(name):  # the zygote's cytoplasm shows instead
            continue
        x, y = embryo.to_image((centre + sign * offset)[None])[0]
        canvas.blob(x, y, radius, radius * 0.95, axis, fill=0.5 * presence + 0.4 * (1 - presence),
                    line=0.38 * presence, line_width=line_width, code=MASK_CODES["pronucleus"], label=label)
        for k in range(3):
            angle = axis + 2.1 * k + sign
            nx, ny = x + 0.45 * radius * np.cos(angle), y + 0.45 * radius * np.sin(angle)
            canvas.blob(nx, ny, 0.16 * radius + 0.6, 0.16 * radius + 0.6, 0.0, fill=0.5 - 0.2 * presence,
                        line=0.0, line_width=line_width)


def _draw_blastocyst(embryo: EmbryoSimulator, state: FrameState, canvas: Canvas, texture: np.ndarray,
                     instances: Instances) -> None:
    """Compaction, cavitation, blastocyst (trophectoderm + ICM), expansion and hatching."""
    s, lw, rotation = embryo.scale, embryo.line_width, embryo.rotation
    stage, progress, inner, outer = state.stage, state.progress, state.inner, state.outer
    if stage in (STAGE["sM"], STAGE["sSB"]):
        squeeze = smoothstep(progress / 0.4) if stage == STAGE["sM"] else 1.0
        grow = 1.0 + (0.18 * smoothstep(progress) if stage == STAGE["sSB"] else 0.0)
        cells = state.cells.copy()
        cells[:, :2] *= (1 - 0.4 * squeeze) * grow
        cells[:, 2] *= (1 + 0.15 * squeeze) * grow
        pos = embryo.to_image(cells[:, :2])
        ellipses = np.stack([pos[:, 0], pos[:, 1], cells[:, 2], cells[:, 2] * 0.95, cells[:, 4]], 1)
        count = len(ellipses)
        mass = instances.label("compacted_mass", "compacted_mass")
        if instances.keep("compacted_mass"):
            canvas.paint_cells(ellipses, np.full(count, 0.37), np.full(count, 0.3 * (1 - 0.85 * squeeze)),
                               np.full(count, MASK_CODES["compacted_mass"]), texture * 1.4, lw, np.full(count, mass))
        if stage == STAGE["sSB"]:
            radius = (0.15 + 0.4 * smoothstep(progress)) * inner
            cx, cy = embryo.to_image(embryo.cavity_offset[None] * inner * 0.5)[0]
            cavity = instances.label("cavity", "cavity")
            if instances.keep("cavity"):
                canvas.blob(cx, cy, radius, radius * 0.9, rotation, fill=0.74, line=0.25, line_width=lw,
                            code=MASK_CODES["cavity"], label=cavity)
        return
    # blastocyst: bright cavity filling the zona, thin trophectoderm cells, inner cell mass
    te_thickness = (26.0 - 10.0 * (outer / embryo.zona_outer - 1) / (embryo.expansion - 1)) * s
    cavity = inner - te_thickness * 0.6
    cavity_label = instances.label("cavity", "cavity")
    if instances.keep("cavity"):
        canvas.blob(0.0, 0.0, cavity, cavity, 0.0, fill=0.74, line=0.0, line_width=lw, code=MASK_CODES["cavity"],
                    label=cavity_label)
    te_cells = embryo.te_cells
    angles = rotation + np.arange(te_cells) * 2 * np.pi / te_cells
    ring = inner - te_thickness / 2
    half_length = np.pi * ring / te_cells * 1.15
    te = np.stack([ring * np.cos(angles), ring * np.sin(angles), np.full_like(angles, half_length),
                   np.full_like(angles, te_thickness / 2), angles + np.pi / 2], 1)
    icm_radius = 22.0 * s
    icm_centre = (cavity - 2.2 * icm_radius) * np.array([np.cos(embryo.icm_angle), np.sin(embryo.icm_angle)])
    icm_pos = icm_centre + embryo.icm_layout * icm_radius * 0.9
    icm = np.column_stack([icm_pos, np.full((len(icm_pos), 2), icm_radius), np.zeros(len(icm_pos))])
    ellipses = np.concatenate([te, icm])
    fill = np.concatenate([np.full(len(te), 0.45), np.full(len(icm), 0.33)])
    codes = np.concatenate([np.zeros(len(te), int), np.full(len(icm), MASK_CODES["inner_cell_mass"])])
    parts = np.concatenate([np.full(len(te), instances.label("trophectoderm", "trophectoderm")),
                            np.full(len(icm), instances.label("inner_cell_mass", "inner_cell_mass"))])
    kept = np.concatenate([np.full(len(te), instances.keep("trophectoderm")),
                           np.full(len(icm), instances.keep("inner_cell_mass"))])
    canvas.paint_cells(ellipses[kept], fill[kept], np.full(int(kept.sum()), 0.3), codes[kept], texture, lw,
                       parts[kept])
    if stage == STAGE["sHB"]:  # herniating trophectoderm through a gap in the zona
        radius = (0.22 + 0.25 * smoothstep(progress)) * outer
        dist = outer + 0.2 * radius
        angle = embryo.hatch_angle
        bx, by = dist * np.cos(angle), dist * np.sin(angle)
        bulge = instances.label("hatching_bulge", "hatching_bulge")
        if instances.keep("hatching_bulge"):
            canvas.blob(bx, by, radius, radius * 0.92, angle, fill=0.5, line=0.3, line_width=lw,
                        code=MASK_CODES["hatching_bulge"], texture=texture, label=bulge)
            canvas.blob(bx, by, radius - te_thickness, (radius - te_thickness) * 0.9, angle,
                        fill=0.72, line=0.2, line_width=lw, texture=texture * 0.2, label=bulge)
