"""Drawing primitives of the synthetic embryo: anti-aliased ellipses as numpy distance fields in boxes."""

from __future__ import annotations

import numpy as np


class Canvas:
    """Float scene and uint8 structure mask of the crop around the embryo, plus the tessellation buffers.

    Cells are ellipses; every pixel keeps the smallest and second smallest normalised distance to a cell
    and the winner's id, so touching cells get a dark boundary where their distances meet.
    """

    def __init__(self, xs: np.ndarray, ys: np.ndarray, scene: np.ndarray, mask: np.ndarray,
                 labels: np.ndarray | None = None):
        self.xs, self.ys, self.scene, self.mask = xs, ys, scene, mask
        #: optional int16 instance labels (0 = none): which structure instance each pixel shows (topmost)
        self.labels = labels
        self.nearest = np.full(scene.shape, 9.0, np.float32)
        self.second = np.full(scene.shape, 9.0, np.float32)
        self.cell_id = np.full(scene.shape, -1, np.int16)

    def window(self, cx: float, cy: float, extent: float) -> tuple[slice, slice] | None:
        """Crop slices covering a box of half-size ``extent`` around (cx, cy); None if outside."""
        c0 = max(0, int(cx - extent - self.xs[0]))
        c1 = min(len(self.xs), int(cx + extent - self.xs[0]) + 2)
        r0 = max(0, int(cy - extent - self.ys[0]))
        r1 = min(len(self.ys), int(cy + extent - self.ys[0]) + 2)
        return (slice(r0, r1), slice(c0, c1)) if c1 > c0 and r1 > r0 else None

    def ellipse_distance(self, box: tuple[slice, slice], cx: float, cy: float, a: float, b: float,
                         angle: float) -> np.ndarray:
        """Normalised elliptic distance (1 on the outline) inside ``box``."""
        cos, sin = np.cos(angle), np.sin(angle)
        dx = (self.xs[box[1]] - cx)[None, :]
        dy = (self.ys[box[0]] - cy)[:, None]
        u = (dx * cos + dy * sin) / a
        v = (dy * cos - dx * sin) / b
        return np.sqrt(u * u + v * v)

    def add_cells(self, cells: np.ndarray) -> tuple[slice, slice] | None:
        """Tessellate ellipses ``cells`` rows (cx, cy, a, b, angle) into the nearest/second/id buffers.

        Returns the box covering them all (where ``paint_cells`` has work to do).
        """
        union = None
        for index, (cx, cy, a, b, angle) in enumerate(cells):
            box = self.window(cx, cy, max(a, b) * 1.3 + 2)
            if box is None:
                continue
            union = box if union is None else (
                slice(min(union[0].start, box[0].start), max(union[0].stop, box[0].stop)),
                slice(min(union[1].start, box[1].start), max(union[1].stop, box[1].stop)))
            dist = self.ellipse_distance(box, cx, cy, a, b, angle)
            nearest, second, ids = self.nearest[box], self.second[box], self.cell_id[box]
            wins = dist < nearest
            np.copyto(second, np.where(wins, nearest, np.minimum(second, dist)))
            np.copyto(ids, index, where=wins)
            np.minimum(nearest, dist, out=nearest)
        return union

    def paint_cells(self, cells: np.ndarray, fill: np.ndarray, line: np.ndarray, codes: np.ndarray,
                    texture: np.ndarray, line_width: float, labels: np.ndarray | None = None) -> None:
        """Tessellate then paint the cells: textured cytoplasm, dark membranes, structure codes in the mask
        (and each cell's instance label from ``labels`` where the canvas keeps labels)."""
        box = self.add_cells(cells)
        if box is None:
            return
        ids, nearest, second = self.cell_id[box], self.nearest[box], self.second[box]
        radius = np.append(np.minimum(cells[:, 2], cells[:, 3]), 1.0).astype(np.float32)[ids]
        alpha = np.clip((1.0 - nearest) * radius + 0.5, 0.0, 1.0)
        outline = np.clip(1.0 - np.abs(1.0 - nearest) * radius / line_width, 0.0, 1.0)
        shared = np.clip(1.0 - (second - nearest) * radius * (0.5 / line_width), 0.0, 1.0) * alpha
        membrane = np.maximum(outline, shared)
        value = np.append(fill, 0.0).astype(np.float32)[ids] + texture[box]
        scene, mask = self.scene[box], self.mask[box]
        scene += alpha * (value - scene)
        scene -= membrane * np.append(line, 0.0).astype(np.float32)[ids]
        inside = nearest < 1.0
        mask[inside] = np.append(codes, 0).astype(np.uint8)[ids[inside]]
        if self.labels is not None and labels is not None:
            self.labels[box][inside] = np.append(labels, 0).astype(np.int16)[ids[inside]]
        nearest.fill(9.0)
        second.fill(9.0)
        ids.fill(-1)

    def blob(self, cx: float, cy: float, a: float, b: float, angle: float, fill: float | None,
             line: float, line_width: float, code: int = 0, texture: np.ndarray | None = None,
             label: int = 0) -> None:
        """One standalone ellipse (pronucleus, cavity, bulge, nucleolus): optional fill, dark outline."""
        box = self.window(cx, cy, max(a, b) + 2 * line_width + 2)
        if box is None:
            return
        dist = self.ellipse_distance(box, cx, cy, a, b, angle)
        scene = self.scene[box]
        radius = min(a, b)
        if fill is not None:
            alpha = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)
            value = fill if texture is None else fill + texture[box]
            scene += alpha * (value - scene)
        if line:
            scene -= line * np.clip(1.0 - np.abs(1.0 - dist) * radius / line_width, 0.0, 1.0)
        if code:
            self.mask[box][dist < 1.0] = code
        if label and self.labels is not None:
            self.labels[box][dist < 1.0] = label
