"""Priors that yield to the objective: they give way wherever they would cost the unit drive.

A prior added to the loss trades the unit's drive for naturalness at a rate its weight sets,
and the right rate differs between networks, units and starts: the exemplar-statistics prior
that left a trained ViT's deep units their drive kept 9% of an untrained ViT's units from
rising, where the smooth first image drives a unit past anything in the photos and
every photo-like change lowers it (docs/quality.md). Yielding, after gradient surgery for
multi-task learning (PCGrad: Yu et al., NeurIPS 2020), per picture: where the priors' gradient
points against the objective's, its component along the objective's is dropped, and what is
left is scaled down to at most the objective's gradient in size. The priors then move the
picture only along directions that leave the drive unchanged to first order, and never pull
harder than the objective does: Adam scales each coordinate's step by its gradient's size,
so a larger sideways pull alone would still shrink the steps that drive the unit (measured on
the untrained test ViT: 91% of units rose with the plain prior, 94% yielding without the
bound, 95% with it, 98% without a prior). Adam still sees the sideways pull, so some drive
is lost where the priors pull hard: block 2 of dinov2_vits14 kept 2.15 of its 2.70.
"""
from __future__ import annotations

from typing import Sequence

import torch


def backward(drive: torch.Tensor, priors: torch.Tensor,
             params: Sequence[torch.nn.Parameter]) -> None:
    """Set each parameter's `.grad` for the loss `drive + priors` ([n_items] each, item i
    reading only row i of every parameter), the priors' gradient made to yield item by item."""
    params = list(params)
    items = drive.shape[0]
    drive_grads = torch.autograd.grad(drive.sum(), params, retain_graph=True, allow_unused=True)
    prior_grads = torch.autograd.grad(priors.sum(), params, allow_unused=True)
    d, p = (torch.cat([(torch.zeros_like(param) if grad is None else grad).reshape(items, -1)
                       for grad, param in zip(grads, params)], dim=1)
            for grads in (drive_grads, prior_grads))
    tiny = torch.finfo(d.dtype).tiny
    # Only an opposing prior gives way (a negative dot product).
    against = (d * p).sum(dim=1).clamp(max=0) / (d * d).sum(dim=1).clamp(min=tiny)
    p = p - against[:, None] * d
    # An item without drive (a zero gradient) gets no pull from its priors either.
    p = p * (d.norm(dim=1) / p.norm(dim=1).clamp(min=tiny)).clamp(max=1)[:, None]
    combined = d + p
    offset = 0
    for param in params:
        size = param[0].numel()
        param.grad = combined[:, offset:offset + size].reshape_as(param)
        offset += size
