"""How many items fit in one batch: memory per item, measured, against memory free now.

A step keeps, for the backward pass, every activation the autograd graph saves: that is what
grows with the batch. One step of a one-item run, with a hook on what autograd saves, counts
those bytes on any device, without the allocator's caching getting in the way. Free memory is
the GPU's free memory (`torch.cuda.mem_get_info`) or the machine's available memory
(MemAvailable in /proc/meminfo, else free physical pages).
"""
from __future__ import annotations

import os

import torch

from vitviz.models.loaded import LoadedModel
from vitviz.rendering.objectives import Objective
from vitviz.rendering.presets import Preset

# Of the free memory, the share a batch may plan to use: the rest covers what the count leaves
# out (the forward pass's transient tensors, the optimiser's state, other processes).
SHARE = 0.5


def saved_bytes_per_item(model: LoadedModel, objective: Objective, preset: Preset | str) -> int:
    """Bytes autograd saves during one step of a one-item run (its augmented copies included)."""
    from vitviz.rendering.loop import optimise

    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        next(optimise(model, objective, [0], preset, steps=1, record_every=0))
    return saved


def free_bytes(device: torch.device) -> int:
    """Memory a new batch could use on `device` now."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def items_that_fit(per_item: int, free: int, cap: int) -> int:
    """Items per batch: SHARE of the free memory over the bytes per item, from 1 to `cap`."""
    return max(1, min(cap, int(free * SHARE // max(per_item, 1))))
