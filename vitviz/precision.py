"""The network's arithmetic for a run: "auto" takes bf16 only where the hardware computes it.

bf16 autocast halves a step's time where the processor has bf16 arithmetic (AVX-512 BF16 or
AMX on an x86 CPU, a GPU from NVIDIA's Ampere on) and loses nothing in the quality figures at
equal steps (README, "Speed levers at equal steps"). Elsewhere autocast emulates bf16 and is
slower than fp32, so "auto" stays in fp32 there.
"""
from __future__ import annotations

import functools

import torch

SETTINGS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=None)
def _cpu_has_bf16() -> bool:
    # torch.cpu's probes are private (torch 2.x); without them, fp32 is the safe answer.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 matmuls natively (not emulated in fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _cpu_has_bf16()
    return False


def resolve_precision(setting: str, device: torch.device | str) -> str:
    """The arithmetic a run with precision `setting` uses on `device`: "fp32" or "bf16"."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return setting
