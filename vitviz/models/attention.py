"""A ViT's self-attention computed by hand, so that its maps can be read and replaced: what
the moving-target probe records, and what a frozen-context run holds at the start."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.errors import UserError


def attention_modules(model: nn.Module, kind: type[nn.Module] | None = nn.MultiheadAttention
                      ) -> dict[str, nn.MultiheadAttention]:
    """The network's attention modules of the kind its LoadedModel declares (`attention`)."""
    if kind is None:
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, kind)}


def explicit_attention(
    mha: nn.MultiheadAttention, x: torch.Tensor, frozen: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of [B, T, D] tokens computed by hand, so its maps can be read and replaced.

    Returns (output, per-head maps [B, heads, T, T]). With `frozen`, those maps are used to mix
    the values instead of the ones the current tokens produce.
    """
    batch, tokens, width = x.shape
    heads = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, tokens, heads, width // heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    maps = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(width // heads), dim=-1)
    mixed = (frozen if frozen is not None else maps) @ v
    return mha.out_proj(mixed.transpose(1, 2).reshape(batch, tokens, width)), maps


@contextmanager
def explicit_attention_mode(
    model: nn.Module, frozen: dict[str, torch.Tensor] | None = None,
    kind: type[nn.Module] | None = nn.MultiheadAttention,
) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block every attention module records its maps (and uses `frozen` ones if given)."""
    recorded: dict[str, torch.Tensor] = {}
    modules = attention_modules(model, kind)

    def forward_for(name: str, mha: nn.MultiheadAttention):
        def forward(query, key, value, **_kwargs):
            output, maps = explicit_attention(mha, query, frozen.get(name) if frozen else None)
            recorded[name] = maps
            return output, None

        return forward

    for name, mha in modules.items():
        if not mha.batch_first:
            raise UserError(f"{name}: only batch-first attention (as in torchvision's ViT) is supported")
        mha.forward = forward_for(name, mha)
    try:
        yield recorded
    finally:
        for mha in modules.values():
            del mha.forward
