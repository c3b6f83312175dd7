"""Small constant tensors on a device, made once per (values, device, dtype).

Making a tensor from Python values on a GPU is a copy from pageable host memory, which waits
for all the work queued before it: a constant made every step stalls the host every step until
the GPU has caught up, so the GPU then idles while the host queues the next work. Measured on
an H100 (bench/gpu.sh): nine such waits per step of the default preset.
"""
from __future__ import annotations

import functools

import torch


def _frozen(values):
    if isinstance(values, (list, tuple)):
        return tuple(_frozen(v) for v in values)
    return values


@functools.lru_cache(maxsize=512)
def _made(values: tuple, device: str, dtype: torch.dtype | None) -> torch.Tensor:
    return torch.tensor(values, device=device, dtype=dtype)


def constant(values, device: torch.device | str, dtype: torch.dtype | None = None
             ) -> torch.Tensor:
    """`torch.tensor(values, device=device, dtype=dtype)`, made once and shared: never modify
    it in place."""
    return _made(_frozen(values), str(torch.device(device)), dtype)
