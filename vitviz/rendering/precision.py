"""The network's arithmetic for a run: "auto" takes bf16 only where the hardware computes it.

bf16 halves a step's time where the processor has bf16 arithmetic (AVX-512 BF16 or AMX on an
x86 CPU, a GPU from NVIDIA's Ampere on) and loses nothing in the quality figures at equal
steps (docs/quality.md, "Speed levers at equal steps"). Elsewhere bf16 is emulated and far
slower than fp32 (a 2048 matmul: 62 s against 0.3 s on an AMD EPYC without AVX-512), so
"auto" stays in fp32 there. A bf16 run feeds a bf16 copy of the network (`network`);
the image, the loss and every recorded figure stay fp32.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import threading
import weakref

import torch
from torch import nn

from vitviz.models.layers import layer_table
from vitviz.models.loaded import LoadedModel

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


# In the key of every result whose network may compute in bf16 ("auto" and "bf16"): their
# arithmetic changed from autocast to a bf16 copy of the network (2026-11-27). fp32 runs, every
# other preset's, computed nothing differently and keep their keys.
BF16_ARITHMETIC = "bf16 copy of the network"


def key_entries(setting: str) -> dict:
    """What a run with precision `setting` adds to its result's key."""
    return {} if setting == "fp32" else {"bf16_arithmetic": BF16_ARITHMETIC}


_BF16_COPIES: "weakref.WeakKeyDictionary[nn.Module, nn.Module | None]" = weakref.WeakKeyDictionary()
_COPYING = threading.Lock()


def network(model: LoadedModel, arithmetic: str) -> tuple[LoadedModel, bool]:
    """The model a run in `arithmetic` (resolved: "fp32" or "bf16") feeds its images to, and
    whether its pass runs under bf16 autocast.

    In bf16 it is the same model with a bf16 copy of the network, made once per network and
    kept as long as it lives: every layer then computes in bf16 with no cast between layers,
    where autocast re-casts the frozen weights and the activations around each layer at every
    pass (on a CPU, 8% of the copies' forward and backward pass, 3% of a batch-1 step). The
    model's own network stays fp32 for everything else (metrics, photos, fp32 runs). A network
    that does not run as a bf16 copy (a user's module that mixes in fp32 tensors of its own)
    keeps autocast.
    """
    if arithmetic == "fp32":
        return model, False
    with _COPYING:
        if model.module not in _BF16_COPIES:
            _BF16_COPIES[model.module] = _bf16_copy(model)
        held = _BF16_COPIES[model.module]
    if held is None:
        return model, True
    return dataclasses.replace(model, module=held), False


def _bf16_copy(model: LoadedModel) -> nn.Module | None:
    # Whatever a user's network raises when copied or run in bf16: autocast runs it instead.
    try:
        held = copy.deepcopy(model.module).to(torch.bfloat16)
        layer_table(dataclasses.replace(model, module=held))  # a dry run of the copy
    except Exception:
        return None
    return held
