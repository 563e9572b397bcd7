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
solved batched in torch on the images' device (:mod:`embryo_xai.metrics.imputation`): conjugate gradients on the
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
- *Imputation*: :func:`embryo_xai.metrics.imputation.noisy_linear_impute`.
- *Noise*: std ``road_noise_std`` = 0.01 as grad-cam and Rong et al.'s code, added to the imputed
  pixels only, in the models' input units, here pixels in [0, 1] (grad-cam adds it to whatever tensor the
  model takes, usually ImageNet-normalised, where 0.01 is about 0.0023 in pixel units). One noise field
  per direction and percentile, drawn on the CPU from ``road_seed`` and the image size, is shared by
  every image: values do not depend on the batch, the batching or the device.

Options are the engine's (``FaithfulnessConfig.road_percentiles``, ``road_noise_std``, ``road_seed``;
``conf/metrics``: ``metrics.road_percentiles=[25,50,75]``). A registered subclass may pin its own, e.g.
``class ROAD5(ROADMoRF): metric_name, label, percentiles = "road5", "ROAD@5", (5,)``.
"""

from __future__ import annotations

import math
import weakref
from functools import lru_cache

import torch

from embryo_xai.device import resolve_batch_size
from embryo_xai.metrics.config import FaithfulnessConfig
from embryo_xai.metrics.engine import MetricInputs
from embryo_xai.metrics.imputation import IMPUTE_ELEMENTS, noisy_linear_impute
from embryo_xai.metrics.metric import SingleFaithfulnessMetric
from embryo_xai.metrics.perturb import rank_blocks, upsample_maps
from embryo_xai.metrics.registry import register_metric

#: Rong et al.'s and pytorch-grad-cam's percentiles (share of pixels removed, in %), noise std (theirs, in
#: the models' input units: pixels in [0, 1]) and our seed: the engine's defaults.
ROAD_PERCENTILES: tuple[float, ...] = FaithfulnessConfig.road_percentiles
ROAD_NOISE_STD: float = FaithfulnessConfig.road_noise_std
ROAD_SEED: int = FaithfulnessConfig.road_seed
_DIRECTIONS = ("morf", "lerf")
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
    maps = upsample_maps(inputs.maps, inputs.images.shape[-2:], cfg.upsample)
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
    """Shared logic of the ROAD metrics. Options come from the engine's config; a subclass may pin its
    own (``percentiles``, ``noise_std``, ``seed`` not None; see the module docstring)."""

    percentiles: tuple[float, ...] | None = None
    noise_std: float | None = None
    seed: int | None = None
    #: the metric = sum of weight x mean score per direction
    weights: dict[str, float] = {}

    @classmethod
    def options(cls, config: FaithfulnessConfig) -> tuple[tuple[float, ...], float, int]:
        """(percentiles, noise std, seed): the class's pinned ones, else the config's."""
        return (tuple(config.road_percentiles if cls.percentiles is None else cls.percentiles),
                float(config.road_noise_std if cls.noise_std is None else cls.noise_std),
                int(config.road_seed if cls.seed is None else cls.seed))

    @classmethod
    def forwards(cls, config: FaithfulnessConfig) -> int:
        # One forward per imputed image (road alone: both directions).
        return len(cls.options(config)[0]) * len(cls.weights)

    @classmethod
    def values(cls, inputs: MetricInputs) -> torch.Tensor:
        return sum(weight * cls.mean_scores(inputs, direction) for direction, weight in cls.weights.items())

    @classmethod
    def mean_scores(cls, inputs: MetricInputs, direction: str) -> torch.Tensor:
        """(B,) mean over the percentiles of the imputed images' scores."""
        return _curves(inputs, direction, cls.options(inputs.config)).mean(0)


@register_metric
class ROADMoRF(_ROADMetric):
    """ROAD, most relevant first: mean score with the top-p % pixels imputed (lower is better).

    Group "mask": like DAUC and ADD it removes what the map highlights and asks how much the score drops.
    """

    metric_name, label, higher_is_better, group = "road_morf", "ROAD MoRF", False, "mask"
    weights = {"morf": 1.0}


@register_metric
class ROADLeRF(_ROADMetric):
    """ROAD, least relevant first: mean score with the bottom-p % pixels imputed (higher is better).

    Group "highlight": like IIC and AD it keeps only what the map highlights (the rest imputed) and asks
    whether the score survives.
    """

    metric_name, label, higher_is_better, group = "road_lerf", "ROAD LeRF", True, "highlight"
    weights = {"lerf": 1.0}


@register_metric
class ROAD(_ROADMetric):
    """ROAD combined: (LeRF - MoRF) / 2 of the mean scores, as pytorch-grad-cam's ``ROADCombined``
    (higher is better). No group: it mixes a masking and a highlighting measure."""

    metric_name, label, higher_is_better, group = "road", "ROAD", True, None
    weights = {"lerf": 0.5, "morf": -0.5}
