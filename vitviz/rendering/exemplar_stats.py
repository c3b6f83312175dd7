"""An exemplar-statistics prior: a picture made of the kinds of patches the unit's own photos hold.

The natural-statistics prior (vitviz.rendering.natural) holds a picture to what photos look
like on average; this one holds it to what the photos that drive *this* unit look like. After
VITAL (Gorgun, Schiele and Fischer, ICCV 2025), who match a picture's intermediate feature
distributions to those of real images of its target: each augmented copy's first-block
features are held, channel by channel, to the quantiles of the same channel over the patch
tokens of the unit's reference views (its strongest photo views; its weakest for a minimising
picture), in units of the channel's spread within a photo. Sorting makes the match blind to
where a patch sits: the picture keeps the kinds of patches the references hold (their colours,
edges and textures, and how much of each), and the unit's objective decides where they go.

The same match can be made deeper (the preset knob `exemplar_deep`): at the block output that
feeds the unit's own block (`feeding_block`), the residual stream the unit reads. First-block
features describe colours and edges, which every unit's photos share; the stream into the
unit's block describes what the unit's photos hold at the depth the unit sees them (for a deep
unit, parts and objects). Measured with the independent judge, neither is more specific than
the other, and both cost drive (docs/quality.md): late blocks' streams are much alike over
any photos.

The views are the unit's first `VIEWS` photo-disjoint natural exemplars in the built-in photo
set (vitviz.data.references): the views the judge shows beside the queries, never a view of a
query's photo, so that no picture borrows from a photo its judge queries (a judge reading a
user's folder, VITVIZ_PHOTOS, queries other photos altogether). The built-in set, whatever
folder is configured: a picture neither waits for a folder's index nor changes when one is
built. A set too small for the judge's tasks gives the unit's `VIEWS` strongest views instead.
"""
from __future__ import annotations

from typing import Sequence

import torch

from vitviz.data import references
from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.models.layers import layer_table
from vitviz.models.loaded import LoadedModel
from vitviz.rendering.natural import first_block, positions
from vitviz.rendering.objectives import item_units

VIEWS = 9  # reference views per picture: the judge's references a side
MAX_VIEWS = 64
VERSION = 1
# A run's config names the default views by their rule (`default_ranks`), not by ranks.
DEFAULT_RANKS = "photo-disjoint exemplars"


def feeding_block(model: LoadedModel, layer: str) -> str:
    """The block output that feeds the block holding `layer`: the last block output that runs
    before `layer` (a block's output runs after every layer inside it). A layer of the first
    block reads the patch embedding, which declares no role: the first block's output stands
    in."""
    blocks = []
    for info in layer_table(model):
        if info.name == layer:
            break
        if info.role == "block_output":
            blocks.append(info.name)
    else:
        raise UserError(f"{layer} is not a layer of {model.name}")
    return blocks[-1] if blocks else first_block(model)


def default_ranks(examples, unit: int, bottom: bool) -> list[int]:
    """The ranks (in the unit's drive order on its side) of the views a picture of `unit` is
    held to by default: its photo-disjoint natural exemplars, else its strongest views."""
    try:
        high, low = references.exemplar_ranks(examples, unit, VIEWS)
    except references.TooFewViews:
        return list(range(VIEWS))
    return low if bottom else high


def unit_views(model: LoadedModel, objective, n_items: int, bottom: bool,
               ranks: Sequence[Sequence[int]] | None = None) -> list[torch.Tensor]:
    """Each item's reference views [k, 3, size, size] at the model's size, from the built-in
    photo set: its unit's views of `ranks[i]`, or `default_ranks`. `objective`: a neuron or
    channel (`objectives.reads_one_unit`), one unit or one per item."""
    from vitviz.data.photo_sets import photo_statistics

    units = item_units(objective, n_items)
    examples = photo_statistics(model, objective.layer, getattr(objective, "tokens", "patch"))
    if ranks is None:
        ranks = [default_ranks(examples, item_unit, bottom) for item_unit in units]
    return reference_views(examples, units, ranks, bottom, model.preprocessing.size)


def reference_views(examples, units: Sequence[int], ranks: Sequence[Sequence[int]],
                    bottom: bool, size: int) -> list[torch.Tensor]:
    """Item i's reference views [k, 3, size, size] in [0, 1]: unit i's views of `ranks[i]` in
    its drive order (weakest first with `bottom`). `examples`: a layer's dataset examples
    (`photo_sets.examples_for`)."""
    from vitviz.data.examples import view_tensor

    items = []
    for unit, item_ranks in zip(units, ranks):
        found = examples.extreme_views(unit, max(item_ranks) + 1, bottom)
        items.append(torch.stack([view_tensor(examples, found[rank], size)
                                  for rank in item_ranks]))
    return items


def quantiles(sorted_values: torch.Tensor, count: int) -> torch.Tensor:
    """`count` evenly spaced quantiles along dim -2 of values sorted along it."""
    pool = sorted_values.shape[-2]
    points = ((torch.arange(count, device=sorted_values.device) + 0.5) * pool / count).long()
    return sorted_values[..., points, :]


@torch.no_grad()
def reference(model: LoadedModel, layer: str,
              views: Sequence[torch.Tensor]) -> torch.Tensor:
    """[N, P, C]: each item's `layer` features over all the tokens of its views
    ([k, 3, H, W]; k may differ between items), sorted along the tokens for each channel, at
    as many quantiles P as the item with the most tokens has."""
    found = []
    for item in views:
        act = activations(model, model.to_input(item.to(model.device)), [layer])[layer]
        values = positions(act, model.prefix_tokens)
        found.append(values.reshape(-1, values.shape[-1]).sort(dim=0).values)
    pool = max(len(values) for values in found)
    return torch.stack([quantiles(values, pool) for values in found])


def distance(act: torch.Tensor, sorted_reference: torch.Tensor, copies: int,
             spread: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    """Per row [R] (`copies` rows per item): the mean squared distance, channel by channel,
    between the row's sorted token values and its item's reference quantiles at as many
    points (a crop at another scale, or with tokens dropped, has fewer tokens), each channel
    in units of its spread within a photo."""
    values = positions(act, prefix_tokens).sort(dim=1).values
    target = quantiles(sorted_reference.to(values.device), values.shape[1])
    difference = (values - target.repeat_interleave(copies, dim=0)) / spread.to(values.device)
    return difference.square().mean(dim=(1, 2))
