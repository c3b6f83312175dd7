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

from vitviz.rendering.drive_cap import values_per_item


@torch.no_grad()
def start_colours(unit_term: Callable[..., torch.Tensor], clean, views: Sequence[torch.Tensor],
                  minimise: bool) -> torch.Tensor:
    """[n_items, 3] in [0, 1]: item i's start colour, from `views[i]` ([k_i, 3, H, W] in
    [0, 1], its unit's reference views). `clean` runs images through the network as the loop's
    clean pass does; `unit_term(activations, n_items)` reads each row's value of the unit."""
    colours = [item.mean(dim=(2, 3)) for item in views]  # [k_i, 3] each
    size = views[0].shape[-1]
    fields = [item[:, :, None, None].expand(-1, 3, size, size) for item in colours]
    values = values_per_item(unit_term, clean, fields)
    chosen = (values.argmin(dim=1) if minimise else values.argmax(dim=1)).tolist()
    # Column j of an item with fewer views than the batch's most holds its view j % k_i.
    return torch.stack([item[column % len(item)] for item, column in zip(colours, chosen)])
