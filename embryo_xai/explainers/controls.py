"""Control pseudo-explainers (issue 14's yardsticks): maps that explain nothing about the model.

- ``random``: uniform noise, seeded per image (seed + the image's bytes), so a map does not depend on the
  batch it is explained in;
- ``gaussian``: a centred isotropic Gaussian (the "embryos are in the middle" prior);
- ``sobel``: the image's Sobel gradient magnitude (edges), average-pooled to the map size.

A metric that scores them as well as the real explainers cannot tell explanations apart, and a sanity
check that passes them is not checking anything. Their maps have the target layer's resolution (the
CNN's CAMs: one forward to read it), so they are compared at the same resolution as the CAMs; none of
them reads a gradient or a class.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.explainers.base import DEFAULT_LAYER, Explainer
from embryo_xai.explainers.registry import register_explainer


class ControlExplainer(Explainer):
    """A control: ``control = True`` (the report keeps it out of the study's approaches); the map size is
    the target layer's (``map_size=null``) or ``map_size`` (int or [h, w])."""

    control = True

    def __init__(self, target_layer: str = DEFAULT_LAYER, batch_size: int | str | None = 64,
                 score: str | None = None, map_size: int | list[int] | None = None) -> None:
        super().__init__(target_layer, batch_size, score)
        self.map_size = map_size

    def size(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> tuple[int, int]:
        """(h, w) of the maps; validates ``targets`` against the model's classes on the way."""
        if self.map_size is not None:
            size = self.map_size if isinstance(self.map_size, list | tuple) else (self.map_size, self.map_size)
            with torch.inference_mode():
                self.resolve_targets(model(images[:1]), None if targets is None else targets[:1])
            return int(size[0]), int(size[1])
        with torch.inference_mode():
            acts = self.layer_activations(model, images)
            self.resolve_targets(acts.logits, targets)
        return tuple(acts.features.shape[-2:])

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        return self.control_maps(images, self.size(model, images, targets))

    def control_maps(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError


@register_explainer
class RandomMap(ControlExplainer):
    """Uniform noise in [0, 1), one generator per image seeded by the CRC-32 of its bytes started at ``seed``."""

    name = "random"
    label = "Random (control)"

    def __init__(self, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = int(seed)

    def control_maps(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # quantised to 1/255 as int32 (well defined for any value range), so float noise below a grey
        # level does not change the seed
        pixels = (images.float() * 255).round().to(torch.int32).cpu().numpy()
        # the CPU generator keeps 32 bits of a seed: the seed enters as the CRC's start value
        maps = [torch.rand(size, generator=torch.Generator().manual_seed(zlib.crc32(p.tobytes(), self.seed)))
                for p in pixels]
        return torch.stack(maps).to(images.device)


@register_explainer
class GaussianPrior(ControlExplainer):
    """A centred isotropic Gaussian, std ``sigma`` x the map's side (the same map for every image)."""

    name = "gaussian"
    label = "Centre prior (control)"

    def __init__(self, sigma: float = 0.25, **kwargs) -> None:
        super().__init__(**kwargs)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def control_maps(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        rows, cols = ((torch.arange(n, device=images.device) + 0.5) / n - 0.5 for n in size)
        squared = rows[:, None] ** 2 + cols[None, :] ** 2
        return torch.exp(-squared / (2 * self.sigma**2)).expand(len(images), -1, -1)


#: Sobel's horizontal derivative kernel (its transpose is the vertical one).
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W) gradient magnitude of the images' grayscale (channel mean), replicate padding."""
    gray = F.pad(images.float().mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    kernels = torch.stack([_SOBEL, _SOBEL.T])[:, None].to(images.device)
    gradients = F.conv2d(gray, kernels)
    return gradients.square().sum(1).sqrt()


@register_explainer
class SobelEdges(ControlExplainer):
    """The image's edges: Sobel gradient magnitude, average-pooled to the map size."""

    name = "sobel"
    label = "Sobel edges (control)"

    def control_maps(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.adaptive_avg_pool2d(sobel_magnitude(images)[:, None], size)[:, 0]
