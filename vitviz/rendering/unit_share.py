"""The unit's share of its layer: drive what sets a unit apart, not what excites its whole layer.

The default's pictures of one late block share one answer: on `dinov2_vits14`'s block 11 the
units' maximising pictures are the same clutter of fur, eyes and grass, in one palette, and
an independent judge reads them worst there, on the maximising side (docs/quality.md). A
picture that excites most of a layer drives every unit of it; what the unit has of its own
is a small part of that.

With weight w, a maximised unit objective's value u is replaced by u - w * sg(u+) * log(m),
with m the layer's mean positive activation, read at the positions the unit is read at, and sg
a stop-gradient. For u > 0 and w = 1 the gradient is u * grad log(u / m): the unit's share of
its layer's excitation, at the drive's own scale, so the unit rises as far as it rises against
its layer. While u <= 0 (a unit that starts below zero) the term is absent and the unit climbs
as it does without it. Only the positive part counts in m: a GELU unit's tail is the same
"off" whatever the picture, and on a leaky target (vitviz.rendering.redirect) the tail's
gradient would push the pre-activations down, not the picture away from what excites the
layer. A minimised picture runs without the term (`Preset.scoped`): a GELU unit driven down
ends on its tail, near 0, where the term has no weight.

Measured on `dinov2_vits14` (blocks 5 and 11, docs/quality.md): the judge level, and the
pictures of different units more alike, not less; off by default.
"""
from __future__ import annotations

import torch

from vitviz.models.tokens import reduce_tokens
from vitviz.rendering.objectives import Channel, Neuron

# Below this the layer counts as unexcited: the logarithm stays finite on a blank picture.
FLOOR = 1e-4


def excitation(objective: Neuron | Channel, act: torch.Tensor, prefix: int) -> torch.Tensor:
    """[R] the mean positive activation of the objective's layer over its units, read where
    the objective reads its unit (the same tokens; a map's centre or its whole extent)."""
    on = act.clamp(min=0)
    if act.dim() == 3:
        per_token = on.mean(dim=2, dtype=torch.float32)
        if isinstance(objective, Neuron):
            return reduce_tokens(per_token, objective.tokens, prefix)
        return per_token[:, prefix:].mean(dim=1)
    if act.dim() == 4:
        if isinstance(objective, Neuron):
            h, w = act.shape[2] // 2, act.shape[3] // 2
            return on[:, :, h, w].mean(dim=1, dtype=torch.float32)
        return on.mean(dim=(1, 2, 3), dtype=torch.float32)
    return on.mean(dim=1, dtype=torch.float32)


def shared(values: torch.Tensor, excited: torch.Tensor, weight: float) -> torch.Tensor:
    """[R] the maximised unit's values u with the share term: u - weight * sg(u+) * log(m)."""
    scale = values.detach().clamp(min=0)
    return values - weight * scale * torch.log(excited.clamp(min=FLOOR))
