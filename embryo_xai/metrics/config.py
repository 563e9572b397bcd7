"""Options of the faithfulness metrics (paper §2.2; docs/architecture.md, "Metrics").

Every option defaults to the paper's choice; the ``*_package`` values select the
conventions of the authors' ``saliency-maps-metrics`` package where it differs
from the paper's text (see ``PACKAGE_CONVENTIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from embryo_xai.device import check_batch_size
from embryo_xai.scoring import EXPLAINED_CLASSES, SCORES, ClassScore

#: The paper's seven metrics (Table 1 order): the default selection. Their labels, directions and
#: families are declared on their classes (``embryo_xai.metrics.metric``, the registry).
METRIC_NAMES: tuple[str, ...] = ("dauc", "iauc", "dc", "ic", "iic", "ad", "add")

_CHOICES: dict[str, tuple[str, ...]] = {
    "deletion_substrate": ("black", "blur", "gaussian", "mean"),
    "insertion_start": ("blur", "gaussian", "black", "mean"),
    "upsample": ("bilinear", "bicubic", "nearest"),
    "score": SCORES,
    "step_grouping": ("even", "fixed_size"),
    "auc_x": ("fraction", "step"),
    "explained_class": EXPLAINED_CLASSES,
    "tie_break": ("random", "raster"),
    "compile_mode": ("off", "default", "reduce-overhead", "max-autotune"),
}


@dataclass(frozen=True)
class FaithfulnessConfig:
    """Options of the metric engine; defaults reproduce the paper.

    - ``deletion_substrate``: what replaces a deleted block (paper: black).
    - ``insertion_start``: the image insertion starts from (paper: blur). ``blur`` is the
      authors' box blur (kernel ``max(H // 5, 9)`` made odd, zero padding); ``gaussian``
      uses ``blur_kernel`` and ``blur_sigma`` (torchvision's default sigma when None).
    - ``blur_kernel``: kernel size of both blurs; None = the authors' ``max(H // 5, 9)``, odd.
    - ``upsample``: interpolation of the map for IIC/AD/ADD (align_corners=False).
    - ``normalize_after_upsample``: paper's ``norm(upsamp(S))`` (True) or the package's
      ``upsamp(norm(S))`` (False; bicubic may then leave [0, 1], as in the package).
    - ``clip_add``: ADD = max(0, c_I - c_{I_1-m}) / c_I as in the paper (True); the package
      returns the unclipped ratio (False).
    - ``normalize_curve``: divide the DAUC/IAUC curve by its max (paper) or not (package).
    - ``auc_x``: abscissa of the curves: ``fraction`` of image pixels changed (paper's p_k)
      or ``step`` index / n (package); identical when blocks and groups have equal sizes.
    - ``max_steps``: cap on perturbation steps; maps with more blocks are grouped.
    - ``step_grouping``: ``even`` = exactly ``min(max_steps, N)`` contiguous groups of the
      ranking whose sizes differ by at most one; ``fixed_size`` = the package's groups of
      ``N // min(max_steps, N)`` blocks (may give more than ``max_steps`` steps).
    - ``tie_break``: order of equally salient blocks in DAUC/IAUC/DC/IC (ReLU zeros, saturated
      maps). ``random``: a seeded random permutation of the block positions, so ties do not
      delete the top-left first; it depends only on ``tie_break_seed`` and the map size (the same
      for every image, so values do not depend on batching or device). ``raster``: block-index
      order (a stable argsort; kept in ``PACKAGE_CONVENTIONS``: the package's ``torch.topk``
      leaves ties in an unspecified order, so parity with it is exact only for untied maps).
    - ``tie_break_seed``: seed of that permutation.
    - ``score``: softmax probability of the explained class (paper) or its logit.
    - ``explained_class``: read by ``FaithfulnessMetric.update`` (which gets batch labels):
      ``prediction`` ignores them, ``label`` explains them. ``faithfulness()`` always
      explains ``targets`` when given and the prediction otherwise.
    - ``batch_size``: images per model forward (``auto``/None: from free GPU memory, 64 on the
      CPU: ``embryo_xai.device``); ``images_per_group``: images whose
      perturbations are built together (bounds memory independently of the batch).
    - ``compile_mode``: ``torch.compile`` the model for the engine's forwards (``reduce-overhead``:
      with CUDA graphs); every chunk is then padded to ``batch_size`` rows, one static shape. Off
      until ``benchmarks/device_check.py`` shows a gain on a GPU (not an option of ``conf/metrics``).
    - ``road_percentiles``, ``road_noise_std``, ``road_seed``: ROAD's shares of pixels removed (in %),
      the std of the noise added to imputed pixels and its seed (Rong et al. 2022; ``metrics/road.py``).
    """

    deletion_substrate: str = "black"
    insertion_start: str = "blur"
    blur_kernel: int | None = None
    blur_sigma: float | None = None
    upsample: str = "bilinear"
    normalize_after_upsample: bool = True
    clip_add: bool = True
    normalize_curve: bool = True
    auc_x: str = "fraction"
    max_steps: int = 196
    step_grouping: str = "even"
    tie_break: str = "random"
    tie_break_seed: int = 0
    score: str = "probability"
    explained_class: str = "prediction"
    batch_size: int | str | None = 64
    images_per_group: int = 16
    compile_mode: str = "off"
    road_percentiles: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    road_noise_std: float = 0.01
    road_seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        check_batch_size(self.batch_size)
        # a Hydra list arrives as a ListConfig: a tuple keeps the (frozen) config hashable
        object.__setattr__(self, "road_percentiles", tuple(float(p) for p in self.road_percentiles))
        if not self.road_percentiles or not all(0 < p < 100 for p in self.road_percentiles):
            raise ValueError(f"road_percentiles must be a non-empty list in (0, 100), got {self.road_percentiles}")
        if self.road_noise_std < 0:
            raise ValueError(f"road_noise_std must be >= 0, got {self.road_noise_std}")
        for name in ("max_steps", "images_per_group"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.blur_kernel is not None and (self.blur_kernel < 1 or self.blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be a positive odd integer, got {self.blur_kernel}")

    @property
    def scorer(self) -> ClassScore:
        """How the explained class is chosen and scored (shared with the explainers and the evaluator)."""
        return ClassScore(self.score, self.explained_class)

    @classmethod
    def from_kwargs(cls, **cfg: Any) -> FaithfulnessConfig:
        """Build from keyword options (e.g. a Hydra node), naming unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown faithfulness option(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**cfg)


#: Options that reproduce ``saliency-maps-metrics`` 0.0.26 (the paper authors' package).
#: Two further differences are not options: its IIC/AD/ADD min-max normalise over the whole
#: batch at once (call it one image at a time to get per-image maps, as the paper defines),
#: and when no class list is given its Insertion explains the class predicted on the
#: *blurred* start image; pass the predicted classes explicitly to it.
PACKAGE_CONVENTIONS: dict[str, Any] = {
    "normalize_curve": False,
    "auc_x": "step",
    "step_grouping": "fixed_size",
    "upsample": "bicubic",
    "normalize_after_upsample": False,
    "clip_add": False,
    "tie_break": "raster",
}


def package_config(**overrides: Any) -> FaithfulnessConfig:
    """Config matching the authors' package, with optional overrides."""
    return replace(FaithfulnessConfig(**PACKAGE_CONVENTIONS), **overrides)
