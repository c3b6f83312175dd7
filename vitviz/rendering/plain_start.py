"""The plain start: a unit's picture starts at the colour of its own photos, not at grey.

Some units want a colour more than a shape: a flat field in the colour of one of their photo
views drives them as hard as their strongest photo (vitviz.quality.plain_colour). From grey
noise the optimiser falls short of those units: on block 2 of dinov2_vits14 a quarter of the
default's pictures drove their unit less than that flat field (docs/quality.md, "A plain
colour beside every picture"). Started at the flat field, a picture begins where the colour
has it and the steps add what else drives the unit.

Off in the default: on block 2 it put 91% of the pictures past their plain colour (78% from
grey) and 94% past their photos (88%), but the independent judges read them no better (the
photo-disjoint margin, paired over 16 units: -7.5 ± 5.7 points with EfficientNet-Lite0,
-0.6 ± 3.6 with Lite2), and the default keeps what wins the judge.

The colour is the mean of one of the unit's reference views (the photo-disjoint natural
exemplars that the exemplar-statistics prior holds it to, never a view the judge queries):
the one whose flat field drives the unit most (least, when minimising), read as the loop
pushes the unit.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


@torch.no_grad()
def start_colours(unit_term: Callable[..., torch.Tensor], clean, views: Sequence[torch.Tensor],
                  minimise: bool) -> torch.Tensor:
    """[n_items, 3] in [0, 1]: item i's start colour, from `views[i]` ([k_i, 3, H, W] in
    [0, 1], its unit's reference views). `clean` runs images through the network as the loop's
    clean pass does; `unit_term(activations, n_items)` reads each row's value of the unit."""
    count = max(len(item) for item in views)
    # As many colours per item (one repeated) so that the objective reads them as one batch.
    colours = torch.stack([item.mean(dim=(2, 3))[torch.arange(count) % len(item)]
                           for item in views])  # [n_items, count, 3]
    size = views[0].shape[-1]
    fields = colours.flatten(0, 1)[:, :, None, None].expand(-1, 3, size, size)
    values = unit_term(clean(fields), len(views)).float().view(len(views), count)
    chosen = values.argmin(dim=1) if minimise else values.argmax(dim=1)
    return colours[torch.arange(len(views)), chosen.to(colours.device)]
