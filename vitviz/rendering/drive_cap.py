"""The drive cap: the objective stops pushing a picture once it drives its unit well past the
unit's own photos, so that the rest of the steps go to the natural-image priors.

Left alone, the default drives deep units to several times their strongest photo (8x at 64
steps, up to 47x; docs/quality.md), and every step spent past that point buys saturation and
fine strokes that no photo holds, while a prior's pull is dwarfed by the objective's gradient.
Capped, a copy whose value has passed `factor` times the unit's value on its reference views
(the same views the exemplar-statistics prior holds it to) gets no gradient from the
objective: only the priors move it, until it falls back below the cap.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


@torch.no_grad()
def caps(unit_term: Callable[..., torch.Tensor], clean, views: Sequence[torch.Tensor],
         factor: float, minimise: bool) -> torch.Tensor:
    """[n_items]: where item i's objective stops pushing. `views[i]` ([k_i, 3, H, W] in [0, 1])
    are its unit's reference views; `clean` runs images through the network as the loop's
    clean pass does; `unit_term(activations, n_items)` reads each row's value as the loop
    pushes it (the objective's target, or its token-focused value). The cap lies past the
    views' most extreme value by `factor - 1` times its size: `factor` x the strongest
    view's value for a maximising picture of a unit photos drive up, and never short of the
    views themselves."""
    values = values_per_item(unit_term, clean, views)
    extreme = values.amin(dim=1) if minimise else values.amax(dim=1)
    direction = -1.0 if minimise else 1.0
    return extreme + direction * (factor - 1) * extreme.abs()


@torch.no_grad()
def values_per_item(unit_term: Callable[..., torch.Tensor], clean,
                    images: Sequence[torch.Tensor]) -> torch.Tensor:
    """[n_items, count]: item i's unit read on each of `images[i]` ([k_i, 3, H, W] in [0, 1]),
    as `caps` reads it; `count` is the most images an item has, and an item with fewer repeats
    them (column j holds its image j % k_i), so that the objective reads all items as one
    batch."""
    count = max(len(item) for item in images)
    rows = torch.cat([item[torch.arange(count) % len(item)] for item in images])
    return unit_term(clean(rows), len(images)).float().view(len(images), count)


def capped(values: torch.Tensor, item_caps: torch.Tensor, copies: int,
           minimise: bool) -> torch.Tensor:
    """The objective's per-row values (`copies` rows per item), held at their item's cap:
    past it, a row's value gives no gradient."""
    limit = item_caps.to(values.device).repeat_interleave(copies)
    return torch.maximum(values, limit) if minimise else torch.minimum(values, limit)
