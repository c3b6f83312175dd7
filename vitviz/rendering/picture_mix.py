"""Accentuated exemplars drawn from the unit's own picture: each photo mixed in pixels with it,
only as much as it takes.

The gradient accentuation (vitviz.rendering.accentuate) changes a photo along the unit's
gradient, held to the photo's first-block features; an independent judge reads what it makes
level with the photos it starts from, in every design tried (docs/quality.md). What the
unit's pictures add to its photos does reach that judge when put into the photo itself: a
photo carrying a faint copy of its unit's picture tells it more than the photo alone, and a
copy of another unit's picture less. So here the change is the picture: each photo view is
mixed with one of the unit's pictures (maximising ones on the strong side, minimising ones on
the weak side, in turn) at the smallest share of `SHARES` that brings the unit's drive
(vitviz.models.drive) to its extreme over the photo set. Where no share reaches it, the share
that comes closest; where no share moves the unit the asked way at all, the photo stays as it
is, and so does a photo already as extreme as the strongest. The photo keeps at least
1 - max(SHARES) of every pixel, so the exemplar stays that photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vitviz.data.references import REFERENCES, exemplar_ranks
from vitviz.models.drive import capture_drives
from vitviz.models.forward import activations
from vitviz.models.loaded import LoadedModel
from vitviz.models.tokens import unit_values
from vitviz.rendering.exemplar_stats import reference_views

SHARES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class Mixed:
    """Photos mixed with pictures: the photos and the images made of them [N, 3, H, W] in
    [0, 1], each one's share of the picture (0: the photo unchanged), and the unit's drive on
    the photo and on the result."""

    photos: torch.Tensor
    images: torch.Tensor
    shares: list[float]
    photo_drive: list[float]
    drive: list[float]


def mixed(photos: torch.Tensor, pictures: torch.Tensor, shares) -> torch.Tensor:
    """Photos [N, 3, H, W], photo i mixed with picture i mod P of `pictures` [P, 3, H, W]: 1 -
    share of the photo, share of the picture (a share per photo, or one for all)."""
    shares = torch.as_tensor(shares, dtype=photos.dtype, device=photos.device)
    if shares.dim() == 1:
        shares = shares.view(-1, 1, 1, 1)
    chosen = pictures[torch.arange(len(photos), device=pictures.device) % len(pictures)]
    return (1 - shares) * photos + shares * chosen.to(photos.device, photos.dtype)


def chosen_shares(drives: torch.Tensor, extreme: float, minimise: bool) -> list[float]:
    """Per photo, the share to mix in: `drives` [N, 1 + len(SHARES)] is the unit's drive on
    each photo (column 0) and on its mix at each share. The smallest share that reaches
    `extreme` (at least it, or with `minimise` at most it), else the one that comes closest,
    else 0 where no share moves the drive the asked way or the photo is already there."""
    signed = -drives if minimise else drives
    target = -extreme if minimise else extreme
    shares = []
    for row in signed:
        reached = (row >= target).nonzero()
        if len(reached):
            shares.append(0.0 if int(reached[0]) == 0 else SHARES[int(reached[0]) - 1])
            continue
        best = int(row.argmax())
        shares.append(SHARES[best - 1] if best > 0 and row[best] > row[0] else 0.0)
    return shares


@torch.no_grad()
def unit_drive(model: LoadedModel, layer: str, unit: int, images: torch.Tensor,
               tokens: str | int = "patch", batch_size: int = 32) -> torch.Tensor:
    """The unit's drive [N] on images [N, 3, H, W] in [0, 1] (any size), reduced over `tokens`
    as its dataset examples are: the order its photos are ranked in."""
    found = []
    for start in range(0, len(images), batch_size):
        batch = model.to_input(images[start:start + batch_size])
        with capture_drives(model.module, [layer]) as captured:
            act = activations(model, batch, [layer])[layer].float()
        values = captured[layer][-1] if captured.get(layer) else act
        found.append(unit_values(values, tokens, model.prefix_tokens)[:, unit].cpu())
    return torch.cat(found)


def accentuated(model: LoadedModel, layer: str, unit: int, photos: torch.Tensor,
                pictures: torch.Tensor, extreme_view: torch.Tensor, minimise: bool = False,
                tokens: str | int = "patch") -> Mixed:
    """`photos` [N, 3, S, S] (the unit's exemplars, in [0, 1]) each mixed with `pictures`
    [P, 3, S, S] (the unit's maximising pictures, or with `minimise` its minimising ones) as
    little as it takes to drive the unit as hard as `extreme_view` [1, 3, S, S] does: its
    strongest photo view (with `minimise`, its weakest), read the same way as the mixes."""
    photos, pictures = photos.float(), pictures.float()
    candidates = torch.cat([extreme_view.float(), photos]
                           + [mixed(photos, pictures, share) for share in SHARES])
    drives = unit_drive(model, layer, unit, candidates, tokens)
    extreme, drives = float(drives[0]), drives[1:].view(1 + len(SHARES), -1).T
    shares = chosen_shares(drives, extreme, minimise)
    columns = [0 if share == 0 else SHARES.index(share) + 1 for share in shares]
    return Mixed(photos, mixed(photos, pictures, shares), shares, drives[:, 0].tolist(),
                 [float(drives[i, c]) for i, c in enumerate(columns)])


def unit_exemplars(model: LoadedModel, layer: str, unit: int, examples, pictures: torch.Tensor,
                   minimise: bool = False, count: int = REFERENCES,
                   tokens: str | int = "patch") -> Mixed:
    """The unit's first `count` photo-disjoint exemplars on one side (its strongest, or with
    `minimise` its weakest, after the judge's queries: `references.disjoint_exemplars`), each
    mixed with `pictures` [P, 3, S, S] by `accentuated`. `examples`: the layer's dataset
    examples (`photo_sets.examples_for`)."""
    high, low = exemplar_ranks(examples, unit, count)
    photos, strongest = reference_views(examples, [unit, unit], [low if minimise else high, [0]],
                                        minimise, pictures.shape[-1])
    return accentuated(model, layer, unit, photos, pictures, strongest, minimise, tokens)
