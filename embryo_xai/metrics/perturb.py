"""Building blocks of the perturbations: substrates, block ranking, continuous masks.

Block geometry: block ``(i, j)`` of an ``h x w`` map covers the pixels that nearest
upsampling maps to it (source index ``floor(dst * h / H)``), exactly as the authors'
package upsamples its binary masks. When ``h`` divides ``H`` that is the paper's
``r x r`` block; otherwise blocks differ by one pixel row/column at most.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from embryo_xai.metrics.config import FaithfulnessConfig


def blur_kernel_size(height: int, cfg: FaithfulnessConfig) -> int:
    """The authors' rule: ``max(H // 5, 9)``, made odd (unless ``blur_kernel`` is set)."""
    if cfg.blur_kernel is not None:
        return cfg.blur_kernel
    size = max(height // 5, 9)
    return size + 1 if size % 2 == 0 else size


def substrate(images: torch.Tensor, kind: str, cfg: FaithfulnessConfig) -> torch.Tensor:
    """The image a perturbation moves towards (deletion) or starts from (insertion)."""
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()
    size = blur_kernel_size(images.shape[-2], cfg)
    if kind == "blur":
        # Box filter with zero padding == the package's depthwise conv with ones / k^2.
        return F.avg_pool2d(images, size, stride=1, padding=size // 2, count_include_pad=True)
    if kind == "gaussian":
        sigma = cfg.blur_sigma if cfg.blur_sigma is not None else 0.3 * ((size - 1) * 0.5 - 1) + 0.8
        return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])
    raise ValueError(f"unknown substrate {kind!r}")


def block_index_map(map_hw: tuple[int, int], image_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W) long tensor giving, for each pixel, the index ``i * w + j`` of its map block."""
    h, w = map_hw
    blocks = torch.arange(h * w, device=device, dtype=torch.float32).view(1, 1, h, w)
    return F.interpolate(blocks, size=image_hw, mode="nearest")[0, 0].long()


def step_groups(n_blocks: int, cfg: FaithfulnessConfig, device: torch.device) -> tuple[torch.Tensor, int]:
    """Group (= step - 1) of each rank position, and the number of steps.

    ``even``: ``min(max_steps, N)`` contiguous runs of the ranking whose sizes differ by
    at most one. ``fixed_size``: the package's runs of ``N // min(max_steps, N)`` blocks,
    the last one possibly shorter, hence ``ceil(N / size)`` steps.
    """
    ranks = torch.arange(n_blocks, device=device)
    bounded = min(cfg.max_steps, n_blocks)
    if cfg.step_grouping == "even":
        return ranks * bounded // n_blocks, bounded
    size = n_blocks // bounded
    return ranks // size, -(-n_blocks // size)


def rank_blocks(maps: torch.Tensor, tie_break: str = "raster", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Saliency order of the blocks: (order, rank) both (B, N).

    Descending and stable, so equal saliencies keep the order of the columns sorted:
    ``raster`` sorts the blocks in index order (ties deleted top-left first, as the package);
    ``random`` sorts them in a seeded random permutation first, which makes that permutation
    the tie order (a lexsort on (saliency, random key) without float keys). The permutation is
    drawn on the CPU from ``seed`` alone, so it is the same on every device and for every batch.
    """
    flat = maps.flatten(1)
    n_blocks = flat.shape[1]
    if tie_break == "random":
        shuffle = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(int(seed))).to(flat.device)
        order = shuffle[torch.sort(flat[:, shuffle], dim=1, descending=True, stable=True).indices]
    elif tie_break == "raster":
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    else:
        raise ValueError(f"tie_break={tie_break!r}; choose one of random, raster")
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_blocks, device=flat.device).expand_as(order))
    return order, rank


def min_max(values: torch.Tensor) -> torch.Tensor:
    """Per-image min-max over all but the first dim. A constant map becomes all zeros
    ("highlights nothing"), so IIC/AD/ADD stay defined and penalise an empty map."""
    flat = values.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    normed = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), 0.0)
    return normed.view_as(values)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(B, h, w) maps -> (B, H, W) float32, as every metric upsamples them (``align_corners=False``)."""
    align = None if mode == "nearest" else False
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode=mode, align_corners=align)[:, 0]


def highlight_mask(maps: torch.Tensor, image_hw: tuple[int, int], cfg: FaithfulnessConfig) -> torch.Tensor:
    """``m = norm(upsamp(S))`` (paper) or ``upsamp(norm(S))`` (package): (B, 1, H, W)."""
    if cfg.normalize_after_upsample:
        return min_max(upsample_maps(maps, image_hw, cfg.upsample))[:, None]
    return upsample_maps(min_max(maps), image_hw, cfg.upsample)[:, None]
