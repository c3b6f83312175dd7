"""Redirected activations: let the gradient through GELUs and ReLUs that would block it.

A unit whose pre-activation starts far below zero sits on the flat tail of its GELU (or on a
ReLU's zero), so its gradient is nearly zero and plain ascent leaves the image grey. For the
first steps of a run, each GELU/ReLU passes the incoming gradient straight through wherever
that gradient would raise its input but the slope is below 1 on the negative side (Lucid's
"redirected ReLU", extended to GELU as in the maintained Lucent fork). Forward values are
unchanged, so every measured activation is exact.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class _Redirected(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind = kind
        return F.gelu(x) if kind == "gelu" else F.relu(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = F.gelu(leaf) if ctx.kind == "gelu" else F.relu(leaf)
            (true_grad,) = torch.autograd.grad(out, leaf, grad)
        # Loss gradients are descended: a negative gradient asks for a larger input.
        blocked = (x < 0) & (grad < 0)
        return torch.where(blocked, grad, true_grad), None


@contextmanager
def redirected(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, the model's nn.GELU (exact) and nn.ReLU modules redirect gradients."""
    patched = [m for m in model.modules()
               if enabled and (isinstance(m, nn.ReLU) or (isinstance(m, nn.GELU) and m.approximate == "none"))]
    for module in patched:
        kind = "gelu" if isinstance(module, nn.GELU) else "relu"
        module.forward = lambda x, kind=kind: _Redirected.apply(x, kind)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
