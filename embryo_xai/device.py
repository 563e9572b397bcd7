"""Batch sizes picked from free device memory: ``batch_size: auto`` (or null).

The metric engine (``metrics.batch_size``) and the batched explainers (Score-CAM, RISE and
Ablation-CAM chunk their extra forward passes by ``method.batch_size``) accept ``auto``: on a CUDA
device the batch is the number of items whose estimated working set fits in half of the free memory
(what the driver reports free plus what PyTorch's allocator holds unused), rounded down to a multiple
of 8 and clamped to [1, 1024]; so a larger GPU gets larger batches without tuning. On the CPU (and any
device that is not CUDA) ``auto`` is exactly the fixed default, 64, so nothing there depends on it.
An int is an override, used as given. The defaults in ``conf/`` stay 64 (see the README's GPU check).
"""

from __future__ import annotations

import torch

AUTO = "auto"
#: What ``auto`` gives off CUDA: the configs' default, so CPU results do not change with it.
DEFAULT_BATCH_SIZE = 64
MAX_AUTO_BATCH_SIZE = 1024
#: Share of the free device memory ``auto`` plans to fill (the rest: fragmentation, cuDNN workspaces).
MEMORY_FRACTION = 0.5
#: Working set of one image's forward pass per byte of its float32 input: a generous heuristic for a
#: ResNet-50-sized network in inference (the widest activations alive at once, ~20x the input at
#: stride 32, several times more for BR-NPA's stride 8), plus the copies of the input that the engine
#: and the explainers build per row (masked / perturbed images, masks).
FORWARD_BYTES_PER_INPUT_BYTE = 64


def is_auto(batch_size) -> bool:
    return batch_size is None or batch_size == AUTO


def check_batch_size(batch_size) -> int | str:
    """``"auto"`` (also for None) or an int >= 1; anything else is a ValueError."""
    if is_auto(batch_size):
        return AUTO
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size must be >= 1 or {AUTO!r}, got {batch_size!r}") from None
    if value < 1:
        raise ValueError(f"batch_size must be >= 1 or {AUTO!r}, got {batch_size}")
    return value


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Bytes a new allocation can use on a CUDA device (None elsewhere)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(cached, 0))


def auto_batch_size(bytes_per_item: int, device: torch.device | str, default: int = DEFAULT_BATCH_SIZE) -> int:
    """Items of ``bytes_per_item`` that fit in :data:`MEMORY_FRACTION` of ``device``'s free memory;
    ``default`` on a device that is not CUDA."""
    free = free_memory_bytes(device)
    if free is None:
        return default
    items = int(free * MEMORY_FRACTION // max(int(bytes_per_item), 1))
    if items >= 8:
        items -= items % 8
    return max(1, min(MAX_AUTO_BATCH_SIZE, items))


def forward_bytes_per_item(items: torch.Tensor) -> int:
    """Estimated device bytes of one row of ``items`` (N, C, H, W) going through the model."""
    return int(items[0].numel() * 4 * FORWARD_BYTES_PER_INPUT_BYTE)


def resolve_batch_size(batch_size, items: torch.Tensor, default: int = DEFAULT_BATCH_SIZE) -> int:
    """``batch_size`` as an int: itself, or for ``auto``/None the rows like ``items[0]`` that fit on
    ``items``' device (``default`` on the CPU)."""
    batch_size = check_batch_size(batch_size)
    if batch_size != AUTO:
        return batch_size
    return auto_batch_size(forward_bytes_per_item(items), items.device, default)
