"""ROAD, "remove and debias" (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods"): a plug-in metric family of the engine (docs/architecture.md, "How to add … a metric").

At each percentile ``p`` the ``p`` % most (MoRF) or least (LeRF) relevant pixels of the map, upsampled to
the image, are *imputed* instead of blacked out: each removed pixel takes the weighted mean of its 8
neighbours (1/6 direct, 1/12 diagonal, only neighbours inside the image), the kept pixels fixed, plus
Gaussian noise. So the removed region neither leaks the mask's shape through sharp black edges nor moves
the image off the data. The imputed image's class score is averaged over the percentiles:

- ``road_morf``: mean score with the most relevant pixels imputed (lower is better);
- ``road_lerf``: mean score with the least relevant pixels imputed (higher is better);
- ``road``: ``(road_lerf - road_morf) / 2``, pytorch-grad-cam's ``ROADCombined`` (higher is better).

The imputation is a sparse linear system per image and percentile (unknowns: the removed pixels). Every
public implementation solves it with scipy's direct solver on the CPU, one image at a time; here it is
solved batched in torch on the images' device (:func:`noisy_linear_impute`): conjugate gradients on the
symmetric positive definite form of the system, preconditioned by a geometric multigrid V-cycle, so
about 10 iterations suffice at any image size (plain CG needs a number that grows with the holes'
diameter, several hundred at 112 px).

Conventions, following pytorch-grad-cam 1.5.7 (``pytorch_grad_cam.metrics.road``; parity in
``tests/test_road.py``) where the paper leaves them open:

- *Pixels removed at percentile p*: ``floor(p (N - 1) / 100) + 1`` of the ``N`` pixels. That is exactly
  what grad-cam removes when its ``percentile`` is ``100 - p``: there, ``percentile`` is the share of
  pixels *kept* (its ``ROADMostRelevantFirst(percentile=80)`` imputes the top 20 %), here ``p`` is the
  share removed, as in the paper. The default percentiles 10 … 90 are symmetric, so the averages agree.
- *Ties*: grad-cam removes every pixel tied with its ``np.percentile`` threshold; here pixels are ranked
  once per image (the engine's ``tie_break`` and seed), so exactly the count above is removed.
- *Score*: the engine's score (softmax probability by default) of the imputed image; grad-cam reports the
  score minus the original image's score (``return_diff``). The difference is the same for every map of an
  image, so rankings of approaches do not change, and it cancels in ``road``.
- *Noise*: std :data:`ROAD_NOISE_STD` = 0.01 as grad-cam and Rong et al.'s code, added to the imputed
  pixels only, in the models' input units, here pixels in [0, 1] (grad-cam adds it to whatever tensor the
  model takes, usually ImageNet-normalised, where 0.01 is about 0.0023 in pixel units). One noise field
  per direction and percentile, drawn on the CPU from :data:`ROAD_SEED` and the image size, is shared by
  every image: values do not depend on the batch, the batching or the device.

Options are class attributes (``FaithfulnessConfig`` is shared by all metrics): override them in a
registered subclass, e.g. ``class ROAD5(ROADMoRF): metric_name, label, percentiles = "road5", "ROAD@5",
(5,)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from functools import lru_cache

import torch
import torch.nn.functional as F

from embryo_xai.device import resolve_batch_size
from embryo_xai.metrics.engine import MetricInputs
from embryo_xai.metrics.metric import SingleFaithfulnessMetric
from embryo_xai.metrics.perturb import rank_blocks
from embryo_xai.metrics.registry import register_metric

#: Rong et al.'s and pytorch-grad-cam's percentiles (share of pixels removed, in %).
ROAD_PERCENTILES: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Std of the noise added to imputed pixels (theirs), in the models' input units (pixels in [0, 1]).
ROAD_NOISE_STD = 0.01
ROAD_SEED = 0
#: Stop when the estimated error of every imputed pixel is below this (pixel units): well below the 1e-3
#: parity with scipy's direct solve that the tests check.
ROAD_TOLERANCE = 5e-5
ROAD_MAX_ITERATIONS = 60
#: Pixels (x channels) imputed together, by device type: on the CPU about a million, ~20 % faster per pixel
#: than chunks several times larger (more of the working set stays in the cache), few enough solves that
#: per-operation overhead stays small; on a GPU, larger chunks keep it busy.
IMPUTE_ELEMENTS = {"cpu": 2**20, "default": 2**25}

_DIRECTIONS = ("morf", "lerf")
_OMEGA = 0.9  # damped Jacobi: the 8-neighbour stencil's D^-1 A has eigenvalues in [0, 4/3]
_COARSEST_SIDE = 8
_COARSE_SWEEPS = 10
_SWEEPS = 1  # Jacobi sweeps before and after each coarse correction


# ---------------------------------------------------------------------------------------------------
# Noisy linear imputation
# ---------------------------------------------------------------------------------------------------

def _stencil_sum(x: torch.Tensor, rows: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``S(x)``: the separable [1, 2, 1] x [1, 2, 1] sum over each pixel's 3x3 neighbourhood (zero outside);
    the neighbour weights are ``(S - 4 x) / 12``: 1/6 direct, 1/12 diagonal. Written into ``out`` (scratch
    ``rows``) when given: on a CPU a fresh large tensor per operation costs about as much as the operation."""
    rows = torch.mul(x, 2, out=rows)
    rows[..., 1:].add_(x[..., :-1])
    rows[..., :-1].add_(x[..., 1:])
    out = torch.mul(rows, 2, out=out)
    out[..., 1:, :].add_(rows[..., :-1, :])
    out[..., :-1, :].add_(rows[..., 1:, :])
    return out


def neighbour_mean_weights(x: torch.Tensor) -> torch.Tensor:
    """``sum_j w_ij x_j`` over the 8 neighbours inside the image (1/6 direct, 1/12 diagonal)."""
    return (_stencil_sum(x) - 4 * x) / 12


class _Level:
    """One grid of the multigrid hierarchy: which pixels are unknown, the operator on them, and the
    level's work buffers (allocated once per solve, reused by every iteration).

    ``A x = m * (d x - W x)``: ``d`` the sum of the in-image neighbour weights (1 inside, less at the
    border), ``W`` the weighted neighbour sum, ``m`` the unknowns. On unknowns it is symmetric (w_ij = w_ji)
    and, as long as each hole touches a kept pixel, positive definite: a graph Laplacian restricted to the
    removed pixels, the kept ones being its Dirichlet boundary, the image border a free (Neumann) one.
    """

    def __init__(self, unknown: torch.Tensor, dtype: torch.dtype) -> None:
        self.mask = unknown.to(dtype)  # (N, 1, H, W)
        height, width = unknown.shape[-2:]
        degree = neighbour_mean_weights(torch.ones(1, 1, height, width, dtype=dtype, device=unknown.device))
        # A x = (d + 1/3) x - S(x) / 12 on unknowns (x is zero elsewhere).
        self.diagonal = self.mask * (degree + 1 / 3)
        self.off = self.mask / 12
        self.jacobi = self.mask * (_OMEGA / degree)
        self.shape = (height, width)
        self._buffers: dict[str, torch.Tensor] = {}

    def buffer(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        held = self._buffers.get(name)
        if held is None or held.shape != shape:
            held = self._buffers[name] = like.new_empty(shape)
        return held

    def _stencil(self, x: torch.Tensor) -> torch.Tensor:
        return _stencil_sum(x, self.buffer("rows", x.shape, x), self.buffer("sum", x.shape, x))

    def apply(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``A x`` into ``out``."""
        return torch.mul(self.diagonal, x, out=out).addcmul_(self.off, self._stencil(x), value=-1)

    def residual(self, rhs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``rhs - A x`` into the level's ``work`` buffer."""
        out = torch.addcmul(rhs, self.diagonal, x, value=-1, out=self.buffer("work", x.shape, x))
        return out.addcmul_(self.off, self._stencil(x))

    def coarser(self) -> _Level:
        """Cell-centred 2x coarsening; a coarse cell is unknown only if all its fine pixels are, so the
        coarse problem never corrects beyond the fine holes (odd sizes: the missing row counts as unknown)."""
        height, width = self.shape
        padded = F.pad(self.mask, (0, width % 2, 0, height % 2), value=1.0)
        return _Level(F.avg_pool2d(padded, 2) > 0.999, self.mask.dtype)


def _upsample_last(coarse: torch.Tensor, out: torch.Tensor) -> None:
    """Cell-centred linear interpolation along the last dim, edges replicated, into ``out`` (length
    ``2n`` or ``2n - 1``): ``out[2j] = (3 c[j] + c[j-1]) / 4``, ``out[2j+1] = (3 c[j] + c[j+1]) / 4``."""
    n = coarse.shape[-1]
    even, odd = out[..., 0::2], out[..., 1::2]
    m = odd.shape[-1]  # n, or n - 1 for an odd length
    torch.mul(coarse, 0.75, out=even)
    even[..., 1:].add_(coarse[..., :-1], alpha=0.25)
    even[..., :1].add_(coarse[..., :1], alpha=0.25)
    torch.mul(coarse[..., :m], 0.75, out=odd)
    inner = min(m, n - 1)
    odd[..., :inner].add_(coarse[..., 1 : inner + 1], alpha=0.25)
    if m == n:
        odd[..., n - 1 :].add_(coarse[..., n - 1 :], alpha=0.25)


def _upsample_last_transpose(fine: torch.Tensor, out: torch.Tensor) -> None:
    """The exact transpose of :func:`_upsample_last`, into ``out`` (length ``ceil(L / 2)``)."""
    n = out.shape[-1]
    even, odd = fine[..., 0::2], fine[..., 1::2]
    m = odd.shape[-1]
    torch.mul(even, 0.75, out=out)
    out[..., :m].add_(odd, alpha=0.75)
    out[..., :-1].add_(even[..., 1:], alpha=0.25)
    out[..., :1].add_(even[..., :1], alpha=0.25)
    inner = min(m, n - 1)
    out[..., 1 : inner + 1].add_(odd[..., :inner], alpha=0.25)
    if m == n:
        out[..., n - 1 :].add_(odd[..., n - 1 :], alpha=0.25)


def _prolong(coarse: torch.Tensor, fine: _Level) -> torch.Tensor:
    """Bilinear interpolation of a coarse correction to ``fine``'s grid, into its ``work`` buffer."""
    batch, channels, _, coarse_width = coarse.shape
    mid = fine.buffer("mid", (batch, channels, fine.shape[0], coarse_width), coarse)
    _upsample_last(coarse.transpose(-1, -2), mid.transpose(-1, -2))
    out = fine.buffer("work", (batch, channels, *fine.shape), coarse)
    _upsample_last(mid, out)
    return out


def _restrict(residual: torch.Tensor, fine: _Level, coarse: _Level) -> torch.Tensor:
    """The exact transpose of :func:`_prolong` (so the V-cycle is symmetric), on the coarse unknowns."""
    batch, channels = residual.shape[:2]
    mid = fine.buffer("mid", (batch, channels, fine.shape[0], coarse.shape[1]), residual)
    _upsample_last_transpose(residual, mid)
    out = coarse.buffer("rhs", (batch, channels, *coarse.shape), residual)
    _upsample_last_transpose(mid.transpose(-1, -2), out.transpose(-1, -2))
    return out.mul_(coarse.mask)


def _smooth(level: _Level, rhs: torch.Tensor, correction: torch.Tensor, sweeps: int, from_zero: bool) -> torch.Tensor:
    """``sweeps`` damped-Jacobi sweeps on ``A z = rhs``, in place on ``correction``."""
    if from_zero:
        torch.mul(level.jacobi, rhs, out=correction)
        sweeps -= 1
    for _ in range(sweeps):
        correction.addcmul_(level.jacobi, level.residual(rhs, correction))
    return correction


def _v_cycle(levels: list[_Level], index: int, rhs: torch.Tensor) -> torch.Tensor:
    """``z ~ A^-1 rhs``: one symmetric V-cycle (as many damped-Jacobi sweeps before as after the coarse
    correction, restriction the transpose of prolongation), a fixed SPD linear operator of ``rhs``, hence
    a valid preconditioner for CG. Returns the level's ``correction`` buffer."""
    level = levels[index]
    correction = level.buffer("correction", rhs.shape, rhs)
    if index == len(levels) - 1:  # coarsest grid (a few pixels a side)
        return _smooth(level, rhs, correction, _COARSE_SWEEPS, from_zero=True)
    _smooth(level, rhs, correction, _SWEEPS, from_zero=True)
    coarse = levels[index + 1]
    coarse_correction = _v_cycle(levels, index + 1, _restrict(level.residual(rhs, correction), level, coarse))
    correction.addcmul_(level.mask, _prolong(coarse_correction, level))
    return _smooth(level, rhs, correction, _SWEEPS, from_zero=False)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image and channel: (N, C, 1, 1)."""
    return torch.linalg.vecdot(a.flatten(-2), b.flatten(-2))[..., None, None]


def noisy_linear_impute(images: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor | None = None,
                        tolerance: float = ROAD_TOLERANCE,
                        max_iterations: int = ROAD_MAX_ITERATIONS) -> torch.Tensor:
    """Rong et al.'s linear imputation, batched: each removed pixel becomes the weighted mean of its 8
    neighbours inside the image (1/6 direct, 1/12 diagonal), kept pixels unchanged, then ``noise`` is
    added to the removed pixels.

    images: (N, C, H, W); removed: (N, H, W) bool, each image keeping at least one pixel; noise:
    broadcastable to images, or None (no noise). Every image, channel and hole is solved at once by
    multigrid-preconditioned conjugate gradients in float32 (float64 for float64 images) on the images'
    device, until the estimated error of every imputed pixel is below ``tolerance``.
    """
    if removed.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"removed must be (N, H, W) = {(images.shape[0], *images.shape[2:])}, "
                         f"got {tuple(removed.shape)}")
    if bool(removed.flatten(1).all(dim=1).any()):
        raise ValueError("an image with every pixel removed has nothing to impute from")
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    values = images.to(dtype)
    levels = [_Level(removed[:, None], dtype)]
    while min(levels[-1].shape) >= 2 * _COARSEST_SIDE:
        levels.append(levels[-1].coarser())
    fine = levels[0]
    # Right-hand side: the kept neighbours' weighted values, on the unknowns.
    residual = fine.mask * neighbour_mean_weights(values * (1 - fine.mask))
    solution = torch.zeros_like(residual)
    direction, product = torch.empty_like(residual), torch.empty_like(residual)
    rz = None
    for iteration in itertools.count():
        preconditioned = _v_cycle(levels, 0, residual)
        # The V-cycle nearly inverts A, so its output estimates the remaining error pixel by pixel: a
        # system (image x channel) is done when that estimate is below the tolerance. Done systems stop
        # moving (no wasted updates; no residual decaying into float32 subnormals, slow on CPUs).
        error = preconditioned.abs().amax((-2, -1), keepdim=True)
        active = error > tolerance
        if not bool(active.any()):  # one host sync per iteration (~100 kernels each)
            break
        if iteration == max_iterations:
            warnings.warn(f"ROAD imputation: estimated error {float(error.max()):.1e} > {tolerance:.0e} "
                          f"after {max_iterations} iterations", RuntimeWarning, stacklevel=2)
            break
        rz_next = _dot(residual, preconditioned)
        if rz is None:
            direction.copy_(preconditioned)
        else:
            direction.mul_(torch.where(active & (rz > 0), rz_next / rz, 0)).add_(preconditioned)
        rz = rz_next
        curvature = _dot(direction, fine.apply(direction, out=product))
        step = torch.where(active & (curvature > 0), rz / curvature, 0)  # 0: done, or solved exactly
        solution.addcmul_(step, direction)
        residual.addcmul_(step, product, value=-1)
    if noise is not None:
        solution = solution + fine.mask * noise.to(dtype)
    return torch.where(fine.mask > 0, solution, values).to(images.dtype)


# ---------------------------------------------------------------------------------------------------
# ROAD scores
# ---------------------------------------------------------------------------------------------------

def removed_counts(n_pixels: int, percentiles: tuple[float, ...]) -> list[int]:
    """Pixels removed at each percentile: ``floor(p (N - 1) / 100) + 1`` (grad-cam's count at ``100 - p``)."""
    for p in percentiles:
        if not 0 < p < 100:
            raise ValueError(f"ROAD percentiles must lie in (0, 100), got {p}")
    return [int(p * (n_pixels - 1) // 100) + 1 for p in percentiles]


@lru_cache(maxsize=4)
def _noise_fields(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(2, P, C, H, W) standard normal fields (MoRF, LeRF), drawn on the CPU from the seed alone."""
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(int(seed)))


def pixel_ranks(inputs: MetricInputs) -> torch.Tensor:
    """(B, H*W) rank of each pixel, 0 = most salient, of the map upsampled to the image as the engine
    does for IIC/AD/ADD (``upsample``, align_corners=False); ties in the engine's ``tie_break`` order."""
    cfg = inputs.config
    align = None if cfg.upsample == "nearest" else False
    maps = F.interpolate(inputs.maps[:, None], size=inputs.images.shape[-2:], mode=cfg.upsample,
                         align_corners=align)[:, 0]
    return rank_blocks(maps, cfg.tie_break, cfg.tie_break_seed)[1]


def road_scores(inputs: MetricInputs, direction: str, percentiles: tuple[float, ...] = ROAD_PERCENTILES,
                noise_std: float = ROAD_NOISE_STD, seed: int = ROAD_SEED) -> torch.Tensor:
    """(P, B) class scores of the images with their ``p`` % most (``morf``) or least (``lerf``) relevant
    pixels imputed, one row per percentile. Imputed images are built and scored one forward chunk
    (the engine's ``batch_size``) at a time, so memory does not grow with the number of images."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    images = inputs.images
    n_images, channels, height, width = images.shape
    n_pixels = height * width
    device = images.device
    counts = torch.tensor(removed_counts(n_pixels, tuple(percentiles)), device=device)
    # Removed: rank in [low, high) -- MoRF the first count ranks, LeRF the last.
    low = torch.zeros_like(counts) if direction == "morf" else n_pixels - counts
    high = counts if direction == "morf" else torch.full_like(counts, n_pixels)
    ranks = pixel_ranks(inputs).view(n_images, height, width)
    noise = None
    if noise_std > 0:
        fields = _noise_fields(seed, (len(percentiles), channels, height, width))
        noise = (noise_std * fields[_DIRECTIONS.index(direction)]).to(device=device, dtype=images.dtype)

    n_jobs = len(percentiles) * n_images  # job j: percentile j // B, image j % B
    batch_size = resolve_batch_size(inputs.config.batch_size, images)
    per_solve = max(1, IMPUTE_ELEMENTS.get(device.type, IMPUTE_ELEMENTS["default"]) // (channels * n_pixels))
    scores = torch.empty(n_jobs, device=device)
    for start in range(0, n_jobs, batch_size):
        jobs = torch.arange(start, min(start + batch_size, n_jobs), device=device)
        imputed = []
        for part in jobs.tensor_split(math.ceil(len(jobs) / per_solve)):  # solves of even sizes
            percentile, image = part // n_images, part % n_images
            job_ranks = ranks[image]
            removed = (job_ranks >= low[percentile, None, None]) & (job_ranks < high[percentile, None, None])
            imputed.append(noisy_linear_impute(images[image], removed, None if noise is None else noise[percentile]))
        scores[jobs] = inputs.scores(torch.cat(imputed), inputs.targets[jobs % n_images])
    return scores.view(len(percentiles), n_images)


# ---------------------------------------------------------------------------------------------------
# The metrics
# ---------------------------------------------------------------------------------------------------

# The last group's curves, so that road_morf, road_lerf and road selected together impute and score
# each direction once (the engine calls each metric's ``values`` with the same ``MetricInputs``).
_last: dict[str, object] = {"inputs": None, "curves": {}}


def _curves(inputs: MetricInputs, direction: str, options: tuple) -> torch.Tensor:
    cached = _last["inputs"]
    if cached is None or cached() is not inputs:  # a new group: forget the previous one
        _last["inputs"], _last["curves"] = weakref.ref(inputs), {}
    curves: dict = _last["curves"]  # type: ignore[assignment]
    key = (direction, *options)
    if key not in curves:
        curves[key] = road_scores(inputs, direction, *options)
    return curves[key]


class _ROADMetric(SingleFaithfulnessMetric):
    """Shared options of the ROAD metrics (override them in a subclass; see the module docstring)."""

    percentiles: tuple[float, ...] = ROAD_PERCENTILES
    noise_std: float = ROAD_NOISE_STD
    seed: int = ROAD_SEED
    directions: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # One forward per imputed image (road alone: both directions).
        cls.forwards_per_image = len(cls.percentiles) * len(cls.directions)

    @classmethod
    def mean_scores(cls, inputs: MetricInputs, direction: str) -> torch.Tensor:
        """(B,) mean over the percentiles of the imputed images' scores."""
        return _curves(inputs, direction, (tuple(cls.percentiles), float(cls.noise_std), int(cls.seed))).mean(0)


@register_metric
class ROADMoRF(_ROADMetric):
    """ROAD, most relevant first: mean score with the top-p % pixels imputed (lower is better).

    Group "mask": like DAUC and ADD it removes what the map highlights and asks how much the score drops.
    """

    metric_name, label, higher_is_better, group = "road_morf", "ROAD MoRF", False, "mask"
    directions = ("morf",)

    @classmethod
    def values(cls, inputs: MetricInputs) -> torch.Tensor:
        return cls.mean_scores(inputs, "morf")


@register_metric
class ROADLeRF(_ROADMetric):
    """ROAD, least relevant first: mean score with the bottom-p % pixels imputed (higher is better).

    Group "highlight": like IIC and AD it keeps only what the map highlights (the rest imputed) and asks
    whether the score survives.
    """

    metric_name, label, higher_is_better, group = "road_lerf", "ROAD LeRF", True, "highlight"
    directions = ("lerf",)

    @classmethod
    def values(cls, inputs: MetricInputs) -> torch.Tensor:
        return cls.mean_scores(inputs, "lerf")


@register_metric
class ROAD(_ROADMetric):
    """ROAD combined: (LeRF - MoRF) / 2 of the mean scores, as pytorch-grad-cam's ``ROADCombined``
    (higher is better). No group: it mixes a masking and a highlighting measure."""

    metric_name, label, higher_is_better, group = "road", "ROAD", True, None
    directions = _DIRECTIONS

    @classmethod
    def values(cls, inputs: MetricInputs) -> torch.Tensor:
        return (cls.mean_scores(inputs, "lerf") - cls.mean_scores(inputs, "morf")) / 2
