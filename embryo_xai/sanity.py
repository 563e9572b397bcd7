"""Sanity checks of saliency methods (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

- **Model-parameter randomisation**, cascading: the model's parameter blocks are re-initialised one after
  the other from the output down (the classifier and attention heads, then the backbone's stages from the
  last to the stem) and after each, the maps are recomputed with the same explainer and classes and
  compared with the original ones by Spearman's rank correlation per image. A method whose maps survive a
  randomised model does not explain what the model learnt.
- **Random logit**: the maps of another class (drawn at random, seeded) against those of the explained
  class. A class-sensitive method gives different maps; AM, attention maps and the controls cannot.

The blocks come from the module tree, not from a list per model: the children of the model (of its
``net`` when it wraps one) that hold parameters, in reverse order of registration (heads are registered
after the backbone), with the ``backbone`` child replaced by its own children, last first.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from embryo_xai.metrics.ground_truth import masked_spearman

#: An approach is flagged when its maps keep a median Spearman similarity above this with the fully
#: randomised model: Adebayo et al. read similarities this high as "the map does not depend on the model".
INSENSITIVE_THRESHOLD = 0.5


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def randomisation_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the parameter blocks in cascade order: output side first."""
    root, prefix = (model.net, "net.") if isinstance(getattr(model, "net", None), nn.Module) else (model, "")
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in reversed(list(root.named_children())):
        if name == "backbone":
            blocks += [(f"{prefix}backbone.{n}", c) for n, c in reversed(list(child.named_children()))
                       if _has_parameters(c)]
        elif _has_parameters(child):
            blocks.append((prefix + name, child))
    return blocks


def reinitialise(module: nn.Module, seed: int) -> None:
    """Every submodule's own ``reset_parameters`` (its default initialisation; BatchNorm: running statistics
    too), drawn from ``seed``, leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for sub in module.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()


def map_similarity(original: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(B,) Spearman between two sets of (B, h, w) maps (float32), NaN where a map is constant."""
    return masked_spearman(original.float().flatten(1), other.float().flatten(1))


def measured_steps(n_blocks: int, steps: int | None) -> list[int]:
    """0-based cascade steps whose maps are computed: all (``steps`` None), or ``steps`` evenly spaced from
    the first to the last (the fully randomised model; ``steps=1``: that one only), every block still being
    randomised in turn."""
    if steps is None or steps >= n_blocks:
        return list(range(n_blocks))
    if steps < 1:
        raise ValueError(f"steps must be >= 1 or null (all), got {steps}")
    if steps == 1:
        return [n_blocks - 1]
    return sorted({round(x) for x in torch.linspace(0, n_blocks - 1, steps).tolist()})


def parameter_randomisation(model: nn.Module, explainer, images: torch.Tensor, targets: torch.Tensor,
                            seed: int = 0, steps: int | None = None,
                            original: torch.Tensor | None = None) -> list[tuple[str, torch.Tensor]]:
    """[(block randomised last, (B,) Spearman to the original maps)] along the cascade, at the
    ``measured_steps``; ``model`` untouched. ``original``: the maps of ``model``, when already computed."""
    original = explainer(model, images, targets) if original is None else original
    randomised = copy.deepcopy(model)
    blocks = randomisation_blocks(randomised)
    measured = measured_steps(len(blocks), steps)
    results = []
    for step, (name, block) in enumerate(blocks):
        reinitialise(block, seed + step)
        if step in measured:
            results.append((name, map_similarity(original, explainer(randomised, images, targets))))
    return results


def random_logit(model: nn.Module, explainer, images: torch.Tensor, targets: torch.Tensor,
                 seed: int = 0, original: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) Spearman between the maps of ``targets`` (``original`` if given) and of another class per image
    (uniform over the other classes, seeded)."""
    with torch.inference_mode():
        n_classes = model(images[:1]).shape[1]
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_classes, (len(targets),), generator=generator).to(targets.device)
    original = explainer(model, images, targets) if original is None else original
    return map_similarity(original, explainer(model, images, (targets + shift) % n_classes))


def flag_insensitive(similarity_after_full_randomisation: torch.Tensor,
                     threshold: float = INSENSITIVE_THRESHOLD) -> bool:
    """Whether the maps barely change with a fully randomised model: median similarity above ``threshold``."""
    values = similarity_after_full_randomisation[torch.isfinite(similarity_after_full_randomisation)]
    return bool(len(values)) and float(values.median()) > threshold
