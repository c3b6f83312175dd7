"""Batch-first self-attention without the sequence-first detour of nn.MultiheadAttention.

nn.MultiheadAttention with `batch_first=True` transposes its input to [tokens, batch, dim] and
projects q, k and v from that non-contiguous view. A 3-D input that cannot be folded into a
matrix makes the projection a batched matmul against the weight expanded to one copy per
token. In fp32 that costs time; under bf16 autocast on the CPU the expanded weight is copied
out (257 x 384 x 1152 values per block for dinov2_vits14), which made bf16 steps 3x slower than
fp32 instead of faster. Here the projection runs on the contiguous [batch, tokens, dim] input
(one matrix product) and the heads go to `attend` (below). Measured on 2 CPU cores,
dinov2_vits14, forward and backward to block 6 at batch 4 (bench/speed.py): fp32 0.42 s -> 0.34
s with the same values (relative gradient difference 3e-6); bf16 autocast 1.28 s -> 0.16 s.

Only the plain self-attention call takes this path (query, key and value the same tensor, no
masks, no attention weights asked for: what torchvision's ViT does); anything else, and any
module whose forward someone else replaced (the moving-target probe), runs as before.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.models.fast.installed import installed


def _fits(mha: nn.MultiheadAttention) -> bool:
    return (mha.batch_first and mha._qkv_same_embed_dim and mha.in_proj_weight is not None
            and mha.bias_k is None and not mha.add_zero_attn
            and "forward" not in mha.__dict__)


def _make_self_attention(module_ref: "weakref.ref[nn.MultiheadAttention]"):
    heads = module_ref().num_heads

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        mha = module_ref()
        if not (query is key and key is value and query.dim() == 3) or need_weights \
                or key_padding_mask is not None or attn_mask is not None or is_causal:
            return type(mha).forward(mha, query, key, value, key_padding_mask, need_weights,
                                     attn_mask, average_attn_weights, is_causal)
        batch, tokens, width = query.shape
        qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        mixed = attend(q, k, v, dropout_p=mha.dropout if mha.training else 0.0)
        return mha.out_proj(mixed.transpose(1, 2).reshape(batch, tokens, width)), None

    return forward


def attend(q, k, v, dropout_p: float = 0.0):
    """Scaled dot-product attention of [batch, heads, tokens, dim] queries, keys and values.

    On the CPU in bf16 it runs as two matrix products with the scores and softmax in fp32:
    PyTorch's fused CPU kernel is slow at a ViT's size (257 tokens of 64 dimensions for
    dinov2_vits14), and this takes 10-12% off a default step (bench/speed.py's `bf16+fused`
    variant) while staying as close to exact: relative error 0.23% in the output and in the
    gradients, against the fused kernel's 0.18% and 0.37% (tests/test_fast_attention.py).
    Scores rounded to bf16 would be faster still but five times less accurate. In fp32 the
    fused kernel is as fast, and on a GPU far faster.
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or dropout_p:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    with torch.autocast("cpu", enabled=False):
        scores = torch.matmul(q.float() * q.shape[-1] ** -0.5, k.float().transpose(-2, -1))
        return torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v)


def fast_self_attention(model: nn.Module):
    """Within the block, the model's fitting attention modules take the batch-first path."""
    return installed((m for m in model.modules()
                      if isinstance(m, nn.MultiheadAttention) and _fits(m)), _make_self_attention)
