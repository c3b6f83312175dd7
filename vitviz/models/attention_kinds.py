"""How a family's attention module hands its queries, keys and values to vitviz and takes the
mixed values back: an `AttentionKind`, which a model declares (`LoadedModel.attention`).

vitviz computes the maps in between (`models/attention.py`), the same way for every family, so
that the moving-target probe can read them and a frozen-context run can hold them. Here is the
kind of torch's nn.MultiheadAttention (torchvision's ViT, OpenCLIP); timm's and Hugging Face's
live with their families (`models/families/`), which import their libraries only when used.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.errors import UserError

# vitviz's part of one attention module's pass: (the module's name, q, k, v as [batch, heads,
# tokens, head dim], the scale of q·k, an additive mask or None) -> the values mixed by the maps.
Attend = Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None],
                  torch.Tensor]


@dataclass(frozen=True)
class AttentionKind:
    label: str  # how a refusal names it, e.g. "timm Attention"
    types: tuple[type[nn.Module], ...]  # the module classes it computes by hand
    # Within the block, each module (name -> module) runs its own forward with `Attend` in the
    # middle: its projections before, its output projection and return type after.
    install: Callable[[dict[str, nn.Module], Attend], ContextManager[None]]


@contextmanager
def replaced_forwards(modules: dict[str, nn.Module],
                      make: Callable[[str, nn.Module], Callable]) -> Iterator[None]:
    """Within the block each module runs `make(name, module)` as its forward. An instance
    attribute, so the fast paths (`models/fast/`) see it and leave the module alone."""
    for name, module in modules.items():
        module.forward = make(name, module)
    try:
        yield
    finally:
        for module in modules.values():
            del module.forward


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[batch, tokens, heads * dim] -> [batch, heads, tokens, dim]."""
    batch, tokens, width = x.shape
    return x.reshape(batch, tokens, heads, width // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[batch, heads, tokens, dim] -> [batch, tokens, heads * dim]."""
    batch, heads, tokens, dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * dim)


def _multihead_forward(name: str, mha: nn.MultiheadAttention, attend: Attend) -> Callable:
    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise UserError(f"{name}: masked attention is not computed by hand; vitviz holds "
                            "the maps of a ViT's self-attention only")
        # Self-attention: key and value are the query (torchvision and OpenCLIP pass it thrice).
        x = query if mha.batch_first else query.transpose(0, 1)
        q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
        heads = mha.num_heads
        mixed = attend(name, split_heads(q, heads), split_heads(k, heads), split_heads(v, heads),
                       mha.head_dim ** -0.5, None)
        output = mha.out_proj(merge_heads(mixed))
        return (output if mha.batch_first else output.transpose(0, 1)), None

    return forward


MULTIHEAD = AttentionKind(
    "nn.MultiheadAttention", (nn.MultiheadAttention,),
    lambda modules, attend: replaced_forwards(
        modules, lambda name, mha: _multihead_forward(name, mha, attend)),
)
