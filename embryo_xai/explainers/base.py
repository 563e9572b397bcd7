"""One small interface for every saliency method: ``explainer(model, images, targets) -> maps``.

The base class owns what every method shares, so each method file only says how its map is
made: input validation, the explained class (predicted class when ``targets`` is None),
the class score (by default the one of the method's paper), the target layer (by module name)
and its activations, re-running the network from that layer on modified activations, chunking of
the extra forward passes, and the output post-processing (float, NaN-free, constant map -> zeros).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from embryo_xai.device import check_batch_size, resolve_batch_size
from embryo_xai.scoring import ClassScore

DEFAULT_LAYER = "backbone.layer4"


@dataclass
class LayerActivations:
    """Activations of the target layer and the logits of the same forward pass.

    ``head_only`` is True when ``model.forward_head(features)`` gives the logits, i.e. the target
    layer is the one ``forward_features`` ends with: the layers after it can then be re-run alone.
    """

    features: torch.Tensor
    logits: torch.Tensor
    head_only: bool


def weighted_channel_sum(weights: torch.Tensor, features: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """``Σ_k w_k A_k``: (B, C) weights and (B, C, h, w) maps -> (B, h, w), ReLU'd unless told not.

    Always float32, also under bf16 autocast: a bf16 map would tie pixels that the metrics rank."""
    with torch.autocast(features.device.type, enabled=False):
        maps = torch.einsum("bc,bchw->bhw", weights.float(), features.float())
    return maps.clamp_min(0) if relu else maps


def chunk_bounds(num_rows: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``batch_size`` rows: the only loop the
    per-channel / per-mask methods run, so peak memory is bounded by ``batch_size``."""
    for start in range(0, num_rows, batch_size):
        yield start, min(start + batch_size, num_rows)


def finalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """float32, NaN/inf replaced by 0, and a constant map returned as zeros (it carries no ranking)."""
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.flatten(1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    return torch.where(constant[:, None, None], torch.zeros_like(maps), maps)


def as_normal_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Inputs made under ``torch.inference_mode`` cannot enter a graph that gradient methods build."""
    return tensor.clone() if tensor.is_inference() else tensor


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else fallback


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Explain the deployed (eval) model — dropout off, BN running stats, so chunked passes do not
    depend on what else is in the chunk — and give every submodule back the mode it came in
    (``model.train(flag)`` would overwrite submodules whose mode differed from the container's)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def layer_candidates(model: nn.Module) -> list[str]:
    """Names worth suggesting for ``target_layer``: stage/block-level modules named like 'layer',
    or every named module when there are none."""
    names = [name for name, _ in model.named_modules() if name]
    stages = [name for name in names if "layer" in name and name.count(".") <= 2]
    return stages or names


class Explainer:
    """Base of every saliency method. Subclasses set ``name`` and implement :meth:`explain`.

    Args:
        target_layer: module name (as in ``model.named_modules()``) whose output maps are explained.
        batch_size: most images any extra forward pass (masked inputs, ablated activations) holds;
            ``"auto"``/None: from free GPU memory, 64 on the CPU (``embryo_xai.device``, :meth:`chunk_size`).
        score: explained class score, ``"logit"`` (raw class logit) or ``"probability"`` (softmax; ``"prob"``
            is accepted); None (default) takes the method's own paper's choice, :attr:`paper_score`
            (docs/architecture.md, "Scores").
            The faithfulness metrics have their own score option: one never sets the other.
    """

    name: ClassVar[str] = ""
    #: Display name in tables and figures (the report's column and row titles).
    label: ClassVar[str] = ""
    #: False for methods that never read a layer (attention): ``target_layer`` is ignored.
    uses_layer: ClassVar[bool] = True
    #: The score the method's paper explains: the pre-softmax class logit for the CAMs (Grad-CAM's
    #: y^c, Grad-CAM++'s exp-closed form, Score-CAM's Algorithm 1, Ablation-CAM); RISE overrides it.
    paper_score: ClassVar[str] = "logit"
    #: True for the control pseudo-explainers (``controls.py``): yardsticks, not approaches of the study.
    control: ClassVar[bool] = False

    def __init__(self, target_layer: str = DEFAULT_LAYER, batch_size: int | str | None = 64,
                 score: str | None = None) -> None:
        self.scorer = ClassScore(self.paper_score if score is None else score)
        self.target_layer = target_layer
        self.batch_size = check_batch_size(batch_size)
        self.score = self.scorer.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_layer={self.target_layer!r}, batch_size={self.batch_size}, " \
               f"score={self.score!r})"

    # ------------------------------------------------------------------ public entry point
    def __call__(self, model: nn.Module, images: torch.Tensor,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B, h, w) float32 at the method's native resolution for the explained classes."""
        images = self.check_images(images)
        device = model_device(model, images.device)
        images = as_normal_tensor(images.to(device))
        targets = self.check_targets(targets, images.shape[0], device)
        with eval_mode(model):
            maps = self.explain(model, images, targets)
        return finalize_maps(maps)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def chunk_size(self, images: torch.Tensor) -> int:
        """Rows per extra forward pass: ``batch_size``, or for ``auto`` what fits on ``images``' device."""
        return resolve_batch_size(self.batch_size, images)

    @classmethod
    def cannot_explain(cls, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model`` (None when it can); checked before any work."""
        return None

    # ------------------------------------------------------------------ validation
    @staticmethod
    def check_images(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images contain NaN or inf values")
        low, high = images.aminmax()
        if bool(low < 0) or bool(high > 1):
            raise ValueError(f"images must be in [0, 1] (models normalise inside), got range "
                             f"[{float(low):.4g}, {float(high):.4g}]")
        return images

    @staticmethod
    def check_targets(targets, batch: int, device: torch.device) -> torch.Tensor | None:
        if targets is None:
            return None
        targets = torch.as_tensor(targets, device=device)
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
        if targets.shape != (batch,):
            raise ValueError(f"targets must have shape ({batch},), got {tuple(targets.shape)}")
        return as_normal_tensor(targets.long())

    @staticmethod
    def resolve_targets(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Predicted class when ``targets`` is None; otherwise checked against the number of classes."""
        if targets is None:
            return logits.argmax(dim=1)
        num_classes = logits.shape[1]
        if bool(((targets < 0) | (targets >= num_classes)).any()):
            raise ValueError(f"target classes must be in [0, {num_classes}), got {targets.tolist()}")
        return targets

    def class_score(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.scorer(logits, targets)

    # ------------------------------------------------------------------ target layer
    def resolve_layer(self, model: nn.Module) -> nn.Module:
        modules = dict(model.named_modules())
        if self.target_layer not in modules:
            raise ValueError(f"{type(model).__name__} has no layer named {self.target_layer!r}; "
                             f"candidate layers: {', '.join(layer_candidates(model))}")
        return modules[self.target_layer]

    def layer_activations(self, model: nn.Module, images: torch.Tensor) -> LayerActivations:
        """Target-layer maps and logits in one forward pass (with gradients if grad mode is on).

        Uses ``forward_features``/``forward_head`` when the model has them, so that the head can be
        re-run alone when the target layer is where ``forward_features`` ends; otherwise a forward
        hook captures the layer's output. The hook hands the rest of the network a copy, so an
        in-place operation downstream cannot alter the captured maps.
        """
        layer = self.resolve_layer(model)
        captured: dict[str, torch.Tensor] = {}

        def capture(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(f"layer {self.target_layer!r} must output (B, C, h, w) maps, got {shape}; "
                                 f"candidate layers: {', '.join(layer_candidates(model))}")
            if torch.is_grad_enabled() and not output.requires_grad:
                output = output.detach().requires_grad_(True)  # frozen weights: still differentiate A
            captured["maps"] = output
            captured["passed_on"] = output.clone()
            return captured["passed_on"]

        handle = layer.register_forward_hook(capture)
        try:
            if has_feature_split(model):
                features = model.forward_features(images)
                logits = model.forward_head(features)
            else:
                features, logits = None, model(images)
        finally:
            handle.remove()
        if "maps" not in captured:
            raise ValueError(f"layer {self.target_layer!r} is not run by {type(model).__name__}'s forward; "
                             f"candidate layers: {', '.join(layer_candidates(model))}")
        head_only = features is not None and features is captured["passed_on"]
        return LayerActivations(captured["maps"], logits, head_only)

    def logits_from_layer(self, model: nn.Module, acts: LayerActivations, maps: torch.Tensor,
                          images: torch.Tensor) -> torch.Tensor:
        """Logits with the target layer's output replaced by ``maps`` (rows match ``images``).

        Fast path: only ``forward_head`` when the layer is where ``forward_features`` ends.
        Otherwise the whole network runs on ``images`` and a hook swaps the layer's output:
        correct for any layer, slower.
        """
        if acts.head_only:
            return model.forward_head(maps)
        handle = self.resolve_layer(model).register_forward_hook(lambda module, inputs, output: maps)
        try:
            return model(images)
        finally:
            handle.remove()


def has_feature_split(model: nn.Module) -> bool:
    return all(callable(getattr(model, method, None)) for method in ("forward_features", "forward_head"))


def gradients_at_layer(explainer: Explainer, model: nn.Module, images: torch.Tensor,
                       targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Target-layer maps A and the gradients dS/dA of each image's class score (both detached).

    One backward of the summed scores gives every image's own gradient: in eval mode images do
    not interact. ``autograd.grad`` leaves the parameters' ``.grad`` untouched.
    """
    with torch.enable_grad():
        acts = explainer.layer_activations(model, images)
        targets = explainer.resolve_targets(acts.logits, targets)
        scores = explainer.class_score(acts.logits, targets)
        (grads,) = torch.autograd.grad(scores.sum(), acts.features)
    return acts.features.detach().float(), grads.detach().float()


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """(N, h, w) -> (N, H, W), bilinear (``align_corners=True`` is ``nn.UpsamplingBilinear2d``'s grid)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=align_corners)[:, 0]
