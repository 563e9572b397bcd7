"""Optics and sensor of one synthetic video: per-plane defocus, noise and the per-frame illumination curve."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Extra defocus (Gaussian sigma in pixels at 500 px) of each plane relative to the central one.
PLANE_DEFOCUS: dict[str, float] = {"F0": 0.0, "F-15": 2.5, "F15": 2.5, "F-30": 5.0, "F30": 5.0,
                                   "F-45": 8.0, "F45": 8.0}


class Camera:
    """Optics and sensor of one video: focus blur, noise, then the frame's illumination curve (LUT).

    Noise comes from a small bank of fields drawn once per video; a random bank and shift per frame
    give fresh-looking noise at the cost of a slice instead of a new Gaussian draw per pixel.
    """

    banks, pad = 3, 32

    def __init__(self, rng: np.random.Generator, size: int, noise: float):
        side = size + self.pad
        fields = rng.standard_normal((self.banks, side, side), dtype=np.float32) * (noise * 255.0)
        self.noise = np.round(fields).astype(np.int16)
        self.size = size

    def draw_noise(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """This frame's noise: (bank, row offset, column offset); the only random draw of an exposure."""
        bank, oy, ox = rng.integers(0, (self.banks, self.pad, self.pad))
        return int(bank), int(oy), int(ox)

    def expose(self, scene: np.ndarray, box: tuple[int, int, int, int], noise: tuple[int, int, int], blur: float,
               lut: np.ndarray) -> Image.Image:
        """Frame from a clean scene; the blur only touches ``box`` (left, top, right, bottom), the embryo:
        the background around it is smooth, and blurring it would cost most of the frame's time."""
        image = Image.fromarray(np.clip(scene * 255.0, 0, 255).astype(np.uint8))
        if blur >= 0.6:
            image.paste(image.crop(box).filter(ImageFilter.GaussianBlur(blur)), box[:2])
        bank, oy, ox = noise
        pixels = np.asarray(image).astype(np.int16)
        pixels += self.noise[bank, oy: oy + self.size, ox: ox + self.size]
        np.clip(pixels, 0, 255, out=pixels)
        return Image.fromarray(lut[pixels])


def illumination_lut(rng: np.random.Generator, video_gain: float, video_gamma: float) -> np.ndarray:
    """Per-frame random exposure, contrast and gamma so global intensity statistics carry no stage."""
    gain = video_gain * rng.uniform(0.8, 1.25)
    gamma = video_gamma * rng.uniform(0.8, 1.25)
    contrast = rng.uniform(0.7, 1.4)
    offset = rng.uniform(-0.1, 0.1)
    levels = np.arange(256, dtype=np.float64) / 255.0
    curve = (levels * gain) ** gamma
    curve = (curve - 0.5) * contrast + 0.5 + offset
    return np.clip(np.round(curve * 255.0), 0, 255).astype(np.uint8)
