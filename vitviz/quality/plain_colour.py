"""The plain-colour baseline: how hard a flat field of colour drives a unit, beside its picture.

Some units are driven as hard by a flat colour as by any photo: on dinov2_vits14, 4 of 32
units sampled from blocks 0 and 1 (most strongest on crops of a white background) and 6 of
15 from block 2 (docs/quality.md, "A plain colour beside every picture"). No picture passes
such a unit's photos by much, and the optimiser's pictures of them can fall short: dark
blobs form in the first steps and stay. Shown beside the picture, the baseline says when a
unit wants a colour rather than a shape, and when a picture falls short of its photos, by
how much a plain colour would have done better. On deep units it stays far below the
picture, which says the picture's structure is what drives the unit.

Per unit: the unit's value on flat images, each the mean colour of one of its `VIEWS`
strongest photo views (weakest, for what drives it down), the most extreme of them kept. A
flat image is the same under every shift and zoom, so its value is read once, not over
shifted views.
"""
from __future__ import annotations

from typing import Sequence

import torch

from vitviz.data.examples import view_tensor
from vitviz.models.forward import Activations, activations
from vitviz.models.loaded import LoadedModel
from vitviz.rendering.objectives import neuron

VIEWS = 3
BATCH = 64


def colours(photos, unit: int, bottom: bool = False, size: int = 224) -> torch.Tensor:
    """[k, 3]: the mean colour of each of the unit's `VIEWS` strongest (weakest) views in
    `photos` (a layer's dataset examples: `vitviz.data.photo_sets.examples_for`), k <= VIEWS."""
    views = photos.extreme_views(unit, VIEWS, bottom)
    return torch.stack([view_tensor(photos, view, size).mean(dim=(1, 2)) for view in views]
                       ) if views else torch.empty(0, 3)


@torch.no_grad()
def plain_colour_values(model: LoadedModel, layer: str, units: Sequence[int], photos,
                        tokens: str | int = "patch", bottom: bool = False) -> list[float]:
    """Per unit (in the order given, repeats allowed): its largest value (smallest with
    `bottom`) on a flat image in the colour of one of its extreme photo views. NaN for a unit
    that the photos give no view of."""
    size = model.preprocessing.size
    found = {unit: colours(photos, unit, bottom, size) for unit in dict.fromkeys(units)}
    rows = [(unit, colour) for unit, unit_colours in found.items() for colour in unit_colours]
    values: dict[int, list[float]] = {unit: [] for unit in found}
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        fields = torch.stack([colour[:, None, None].expand(3, size, size) for _, colour in chunk])
        objective = neuron(layer, tuple(int(unit) for unit, _ in chunk), tokens)
        acts = activations(model, model.to_input(fields), objective.layers)
        acts = Activations({key: value.float() for key, value in acts.items()}, acts.prefix_tokens)
        for (unit, _), value in zip(chunk, objective(acts, len(chunk)).float().tolist()):
            values[unit].append(value)
    pick = min if bottom else max
    return [pick(values[unit]) if values[unit] else float("nan") for unit in units]
