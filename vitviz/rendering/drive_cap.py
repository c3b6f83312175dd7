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
    count = max(len(item) for item in views)
    # As many rows per item (a view repeated) so that the objective reads them as one batch.
    rows = torch.cat([item[torch.arange(count) % len(item)] for item in views])
    values = unit_term(clean(rows), len(views)).float().view(len(views), count)
    extreme = values.amin(dim=1) if minimise else values.amax(dim=1)
    direction = -1.0 if minimise else 1.0
    return extreme + direction * (factor - 1) * extreme.abs()


def capped(values: torch.Tensor, item_caps: torch.Tensor, copies: int,
           minimise: bool) -> torch.Tensor:
    """The objective's per-row values (`copies` rows per item), held at their item's cap:
    past it, a row's value gives no gradient."""
    limit = item_caps.to(values.device).repeat_interleave(copies)
    return torch.maximum(values, limit) if minimise else torch.minimum(values, limit)
