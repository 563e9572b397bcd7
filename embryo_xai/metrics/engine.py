"""Batched faithfulness engine: DAUC, IAUC, DC, IC, IIC, AD, ADD (paper §2.2).

Every perturbed image is a pure function of (image, step): step ``k`` of a pass shows
``fill`` where ``group(pixel) < k`` and ``base`` elsewhere, with the groups taken from
one stable ranking of the map (equal saliencies in a seeded random or in raster order:
``tie_break``). Deletion: base = image, fill = substrate (black). Insertion: base =
blurred image, fill = image. So all steps of several images are
packed into chunks of ``batch_size``, run under ``inference_mode`` on the model's
device, and their class scores gathered with one index per chunk; nothing leaves the
device until the caller reads the result. Deletion step 0 and insertion step n are the
original image: their score is the already-computed ``c_I`` (no extra forward).

Undefined values are NaN: DC/IC when the per-step saliency or score variation is
constant (e.g. a constant map); AD/ADD when ``c_I <= 0`` (no relative drop exists; only
possible with ``score="logit"`` or an underflowing probability); every metric of an
image whose map holds NaN/inf (``result.valid`` is False there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from embryo_xai.device import resolve_batch_size
from embryo_xai.metrics.config import METRIC_NAMES, FaithfulnessConfig
from embryo_xai.metrics.perturb import (
    block_index_map,
    highlight_mask,
    rank_blocks,
    step_groups,
    substrate,
)
from embryo_xai.metrics.registry import check_metric_names, metric_class

Values = dict[str, torch.Tensor]
PASS_METRICS: dict[str, tuple[str, str]] = {"deletion": ("dauc", "dc"), "insertion": ("iauc", "ic")}
SINGLE_STEP_METRICS = ("iic", "ad", "add")
#: Computed by the shared passes below; any other registered metric brings its own ``values``.
ENGINE_METRICS = frozenset({*SINGLE_STEP_METRICS, *(m for pair in PASS_METRICS.values() for m in pair)})


class FaithfulnessResult(dict):
    """``metric name -> (B,)`` values, plus ``valid``: (B,) bool, False where the map
    was unusable (NaN/inf) and every metric of that image is NaN."""

    def __init__(self, values: dict[str, torch.Tensor], valid: torch.Tensor) -> None:
        super().__init__(values)
        self.valid = valid


@dataclass(frozen=True)
class _Pass:
    name: str
    base: torch.Tensor  # (G, C, H, W) image at step 0
    fill: torch.Tensor  # (G, C, H, W) image at the last step
    known_step: int  # step equal to the original image, scored by c_I


def _chunks(n_items: int, size: int) -> Iterator[slice]:
    for start in range(0, n_items, size):
        yield slice(start, min(start + size, n_items))


def _class_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
                  cfg: FaithfulnessConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Score of ``targets`` (or of the argmax when None) for one chunk: (scores, targets)."""
    rows = inputs.shape[0]
    if cfg.compile_mode != "off" and rows < cfg.batch_size:  # compiled: one static shape, zero-padded
        inputs = torch.cat([inputs, inputs.new_zeros(cfg.batch_size - rows, *inputs.shape[1:])])
    logits = model(inputs)[:rows]
    if targets is None:
        targets = logits.argmax(dim=1)
    return cfg.scorer(logits, targets), targets


def _scores_in_chunks(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
                      cfg: FaithfulnessConfig) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_class_scores(model, inputs[sl], None if targets is None else targets[sl], cfg)
             for sl in _chunks(inputs.shape[0], cfg.batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation; NaN where either row is constant."""
    a_c = a - a.mean(dim=-1, keepdim=True)
    b_c = b - b.mean(dim=-1, keepdim=True)
    corr = (a_c * b_c).sum(-1) / ((a_c * a_c).sum(-1) * (b_c * b_c).sum(-1)).sqrt()
    constant = (a.amax(-1) == a.amin(-1)) | (b.amax(-1) == b.amin(-1))
    return torch.where(constant, torch.nan, corr)


def _relative_drop(reference: torch.Tensor, perturbed: torch.Tensor, clip: bool) -> torch.Tensor:
    drop = reference - perturbed
    drop = drop.clamp_min(0) if clip else drop
    return torch.where(reference > 0, drop / reference, torch.nan)


def _curve_auc(scores: torch.Tensor, x: torch.Tensor, cfg: FaithfulnessConfig) -> torch.Tensor:
    if cfg.normalize_curve:
        peak = scores.amax(dim=-1, keepdim=True)
        scores = torch.where(peak > 0, scores / peak, torch.nan)
    return torch.trapezoid(scores, x, dim=-1)


def _single_step(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                 c_orig: torch.Tensor, names: Sequence[str], cfg: FaithfulnessConfig) -> Values:
    """IIC/AD on ``m ⊙ I`` and ADD on ``(1 - m) ⊙ I``, both images batched together."""
    mask = highlight_mask(maps, images.shape[-2:], cfg)
    wanted = {"highlight": bool({"iic", "ad"} & set(names)), "inverse": "add" in names}
    variants = [variant for variant, used in wanted.items() if used]
    inputs = torch.cat([images * (mask if v == "highlight" else 1 - mask) for v in variants])
    scores, _ = _scores_in_chunks(model, inputs, targets.repeat(len(variants)), cfg)
    per_variant = dict(zip(variants, scores.view(len(variants), -1)))
    out: Values = {}
    if "highlight" in per_variant:
        c_m = per_variant["highlight"]
        out["iic"] = (c_orig < c_m).float()
        out["ad"] = _relative_drop(c_orig, c_m, clip=True)
    if "inverse" in per_variant:
        out["add"] = _relative_drop(c_orig, per_variant["inverse"], clip=cfg.clip_add)
    return out


def _multi_step(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                c_orig: torch.Tensor, names: Sequence[str], cfg: FaithfulnessConfig) -> Values:
    """DAUC/DC from one deletion pass and IAUC/IC from one insertion pass, all steps of
    all images of the group packed into shared chunks."""
    n_images, _, height, width = images.shape
    n_blocks = maps.shape[1] * maps.shape[2]
    device = images.device
    order, rank = rank_blocks(maps, cfg.tie_break, cfg.tie_break_seed)
    # Geometry depends only on sizes: built on the host (bincount on CUDA would sync), then moved.
    group_of_rank, n_steps = step_groups(n_blocks, cfg, torch.device("cpu"))
    blocks = block_index_map(maps.shape[1:], (height, width), torch.device("cpu"))
    group_sizes = torch.bincount(group_of_rank, minlength=n_steps).float().to(device)
    pixels_per_block = torch.bincount(blocks.flatten(), minlength=n_blocks).float().to(device)
    group_of_rank, blocks = group_of_rank.to(device), blocks.to(device)
    group_dtype = torch.int16 if n_steps < 2**15 else torch.int32
    pixel_group = group_of_rank[rank][:, blocks].to(group_dtype)  # (G, H, W): step - 1 at which it changes

    # s_k: mean saliency of the blocks changed at step k (as the package: mean of the group).
    sorted_saliency = maps.flatten(1).gather(1, order)
    step_saliency = torch.zeros(n_images, n_steps, device=device)
    step_saliency = step_saliency.index_add_(1, group_of_rank, sorted_saliency) / group_sizes
    if cfg.auc_x == "fraction":
        step_pixels = torch.zeros(n_images, n_steps, device=device)
        step_pixels = step_pixels.index_add_(1, group_of_rank, pixels_per_block[order])
        x = torch.cat([torch.zeros(n_images, 1, device=device), step_pixels.cumsum(1)], 1) / (height * width)
    else:
        x = torch.linspace(0, 1, n_steps + 1, device=device).expand(n_images, -1)

    passes = []
    if {"dauc", "dc"} & set(names):
        passes.append(_Pass("deletion", images, substrate(images, cfg.deletion_substrate, cfg), 0))
    if {"iauc", "ic"} & set(names):
        passes.append(_Pass("insertion", substrate(images, cfg.insertion_start, cfg), images, n_steps))
    bases = torch.stack([p.base for p in passes])
    fills = torch.stack([p.fill for p in passes])

    # Job list (pass, image, step) for every step that is not the original image.
    steps = torch.arange(n_steps + 1, device=device)
    job_pass, job_image, job_step = [], [], []
    for index, spec in enumerate(passes):
        kept = steps[steps != spec.known_step]
        grid_image, grid_step = torch.meshgrid(torch.arange(n_images, device=device), kept, indexing="ij")
        job_pass.append(torch.full((grid_image.numel(),), index, device=device))
        job_image.append(grid_image.flatten())
        job_step.append(grid_step.flatten())
    job_pass, job_image, job_step = torch.cat(job_pass), torch.cat(job_image), torch.cat(job_step)

    curves = torch.empty(len(passes), n_images, n_steps + 1, device=device)
    for sl in _chunks(job_pass.numel(), cfg.batch_size):
        p, b, k = job_pass[sl], job_image[sl], job_step[sl]
        changed = (pixel_group[b] < k[:, None, None].to(group_dtype)).unsqueeze(1)
        inputs = torch.where(changed, fills[p, b], bases[p, b])
        curves[p, b, k], _ = _class_scores(model, inputs, targets[b], cfg)
    for index, spec in enumerate(passes):
        curves[index, :, spec.known_step] = c_orig

    out: Values = {}
    for index, spec in enumerate(passes):
        auc_name, corr_name = PASS_METRICS[spec.name]
        curve = curves[index]
        variation = curve[:, :-1] - curve[:, 1:] if spec.name == "deletion" else curve[:, 1:] - curve[:, :-1]
        out[auc_name] = _curve_auc(curve, x, cfg)
        out[corr_name] = pearson(variation, step_saliency)
    return out


@dataclass(frozen=True)
class MetricInputs:
    """What a plug-in metric's ``values(inputs)`` gets for one group of images: the images, their
    finite maps, the explained classes and their scores on the original images (``c_I``), the
    engine options, and :meth:`scores` to score any batch of perturbed images the engine's way
    (chunked, under inference mode, with the configured score)."""

    model: nn.Module
    images: torch.Tensor  # (B, C, H, W) in [0, 1]
    maps: torch.Tensor  # (B, h, w) float32, NaN/inf maps zeroed (their values are masked to NaN)
    targets: torch.Tensor  # (B,)
    original_scores: torch.Tensor  # (B,) c_I
    config: FaithfulnessConfig

    def scores(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of ``targets`` (default: the images' explained classes, repeated to ``len(inputs)``)."""
        if targets is None:
            targets = self.targets.repeat(inputs.shape[0] // self.targets.shape[0])
        return _scores_in_chunks(self.model, inputs, targets, self.config)[0]


def _evaluate_group(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor | None,
                    names: Sequence[str], cfg: FaithfulnessConfig) -> tuple[Values, torch.Tensor]:
    valid = torch.isfinite(maps).flatten(1).all(dim=1)
    maps = torch.where(valid[:, None, None], maps, 0.0)
    c_orig, targets = _scores_in_chunks(model, images, targets, cfg)
    values: Values = {}
    if {"iic", "ad", "add"} & set(names):
        values.update(_single_step(model, images, maps, targets, c_orig, names, cfg))
    if {"dauc", "iauc", "dc", "ic"} & set(names):
        values.update(_multi_step(model, images, maps, targets, c_orig, names, cfg))
    plug_ins = [name for name in names if name not in ENGINE_METRICS]
    if plug_ins:
        inputs = MetricInputs(model, images, maps, targets, c_orig, cfg)
        values.update({name: metric_class(name).values(inputs).float() for name in plug_ins})
    return {name: torch.where(valid, values[name], torch.nan) for name in names}, valid


def _check_inputs(images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor | None) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"maps must be (B, h, w) with B={images.shape[0]}, got shape {tuple(maps.shape)}")
    if maps.shape[1] > images.shape[2] or maps.shape[2] > images.shape[3]:
        raise ValueError(f"map {tuple(maps.shape[1:])} is larger than the image {tuple(images.shape[2:])}")
    if targets is not None and targets.shape != (images.shape[0],):
        raise ValueError(f"targets must be (B,) = ({images.shape[0]},), got shape {tuple(targets.shape)}")


def faithfulness(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                 targets: torch.Tensor | None = None, metrics: str | Sequence[str] = METRIC_NAMES,
                 **cfg) -> FaithfulnessResult:
    """Per-image faithfulness of ``maps`` for ``model`` on ``images``.

    images: (B, C, H, W) floats in [0, 1] on the model's device; maps: (B, h, w) at any
    resolution (h <= H); targets: (B,) class indices, None = class predicted on images.
    ``cfg``: options of :class:`FaithfulnessConfig`. Returns ``{name: (B,) tensor}`` with
    ``.valid``. The model runs in eval mode; each submodule's mode is restored afterwards.
    """
    config = FaithfulnessConfig.from_kwargs(**cfg)
    names = check_metric_names(metrics)
    _check_inputs(images, maps, targets)
    config = replace(config, batch_size=resolve_batch_size(config.batch_size, images))  # auto: embryo_xai.device
    maps = maps.to(device=images.device, dtype=torch.float32)
    targets = None if targets is None else targets.to(device=images.device, dtype=torch.long)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    forward = model if config.compile_mode == "off" else torch.compile(model, mode=config.compile_mode)
    try:
        with torch.inference_mode():
            parts = [_evaluate_group(forward, images[sl], maps[sl], None if targets is None else targets[sl],
                                     names, config)
                     for sl in _chunks(images.shape[0], config.images_per_group)]
    finally:  # restore every submodule's own mode (a wrapper's flag may differ from its parts')
        for module, training in modes:
            module.training = training
    # Clone outside inference mode so callers (and torchmetrics states) get ordinary tensors.
    values = {name: torch.cat([p[0][name] for p in parts]).clone() for name in names}
    return FaithfulnessResult(values, torch.cat([p[1] for p in parts]).clone())


def forward_passes_per_image(map_hw: tuple[int, int], metrics: str | Sequence[str] = METRIC_NAMES,
                             **cfg) -> int:
    """Model forwards the engine runs per image: 1 original, n per deletion/insertion pass
    (the original-image step reuses c_I), 1 for ``m ⊙ I`` (IIC/AD), 1 for ``(1-m) ⊙ I`` (ADD)."""
    config = FaithfulnessConfig.from_kwargs(**cfg)
    names = set(check_metric_names(metrics))
    _, n_steps = step_groups(map_hw[0] * map_hw[1], config, torch.device("cpu"))
    passes = sum(bool(set(pair) & names) for pair in PASS_METRICS.values())
    plug_ins = sum(metric_class(name).forwards(config) for name in names - ENGINE_METRICS)
    return 1 + passes * n_steps + bool({"iic", "ad"} & names) + ("add" in names) + plug_ins
