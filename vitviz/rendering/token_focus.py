"""Token focus: a unit's picture drives the unit where it is strongest, not on every patch.

A ViT unit read as the mean over its patch tokens (the default, like a CNN channel) is raised
as much by a little more of it on every patch as by much more on a few, and the optimiser
takes the first way: the picture tiles one motif over the whole canvas. On `dinov2_vits14`'s
block 11 that is a clutter of fur, eyes and grass, alike across units, where the unit's photos
are a scene with the thing it responds to in one part of it (docs/quality.md).

With focus f < 1, each augmented copy's value is the mean over its fraction f of patch tokens
where the unit is strongest (its weakest, when minimising): the picture has to carry the unit
only there, and the rest of the canvas is left to the priors (the unit's own photos' patch
statistics, under the default) and to the context those tokens read. Every recorded
activation and figure still reads the plain mean over the patch tokens.

Only a picture of one unit read over the patch tokens (a neuron in the "patch" token mode, a
channel of a token layer) has tokens to focus on, and only one drawn from noise: an
accentuated exemplar keeps the objective it was measured with (`Preset.scoped`). Elsewhere it
is off, and the run's key is the one without it.
"""
from __future__ import annotations

import torch

from vitviz.rendering.objectives import UNIT_TYPES, Channel, Neuron, rows_and_units


def applies(spec: dict) -> bool:
    """Whether an objective (its spec) reads one unit over the patch tokens. On a feature map
    (a CNN's channel) there are no tokens, and the run keeps the objective's own value."""
    return spec.get("type") in UNIT_TYPES and spec.get("tokens", "patch") == "patch"


def focused(objective: Neuron | Channel, act: torch.Tensor, prefix: int, n_items: int,
            fraction: float, minimise: bool) -> torch.Tensor:
    """[R] each row's unit, the mean over its `fraction` of patch tokens where it is highest
    (lowest with `minimise`); at least one token."""
    index, rows = rows_and_units(act, objective.unit, n_items)
    per_token = act[index, prefix:, rows].float()
    count = max(1, round(fraction * per_token.shape[1]))
    return per_token.topk(count, dim=1, largest=not minimise).values.mean(dim=1)
