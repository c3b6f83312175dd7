"""Gradients through GELUs and ReLUs that would block them: at the target, and in the whole network.

`leaky_targets` (the default presets' `leaky_target`) acts on the target layer only. A unit on an
MLP hidden layer is GELU(pre-activation); a unit whose pre-activation starts below zero sits on
GELU's tail, where the slope is tiny and, below -0.75, even negative: ascending the GELU output
there drives the pre-activation further down, and the picture stays grey. At the target module
the gradient is taken through `pre` itself (slope `LEAKY_SLOPE`) wherever `pre <= 0`, and
through the activation's true slope elsewhere: the objective then climbs with the
pre-activation from anywhere, while every forward value (and so every reported activation)
stays the exact post-activation.

`redirected` (the `redirect_steps` knob) is the older, network-wide variant: for the first steps
of a run, every GELU/ReLU of the network passes the incoming gradient straight through wherever
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


# GELU's own slope at 0: the surrogate continues the positive side without a kink in the gradient.
LEAKY_SLOPE = 0.5
RECTIFIERS = (nn.GELU, nn.ReLU)


def _leaky_hook(_module, inputs, output):
    pre = inputs[0]
    surrogate = torch.where(pre > 0, output, LEAKY_SLOPE * pre)
    # Value: exactly `output`; gradient: the surrogate's alone.
    return output.detach() + (surrogate - surrogate.detach())


@contextmanager
def leaky_targets(model: nn.Module, layer_names, enabled: bool = True) -> Iterator[None]:
    """Within the block, target modules that are GELUs or ReLUs pass a leaky gradient (see above).

    In-place ReLUs run out of place meanwhile: in place, their input is already rectified.
    """
    modules = [model.get_submodule(name) for name in dict.fromkeys(layer_names)] if enabled else []
    modules = [m for m in modules if isinstance(m, RECTIFIERS)]
    in_place = [m for m in modules if getattr(m, "inplace", False)]
    for module in in_place:
        module.inplace = False
    handles = [module.register_forward_hook(_leaky_hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in in_place:
            module.inplace = True


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
