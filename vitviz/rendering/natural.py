"""A natural-statistics prior: keep a picture's early features and colours within photos' range.

The default's pictures drift into what no photo looks like: pure, saturated colours and fine
hair-like strokes. The network's first block sees that at once: its features' statistics on
such a picture lie far from their statistics on photos. The prior (the preset knob
`natural_stats`, its weight) adds to each step's loss

- the distance between each augmented copy's first-block statistics (each channel's mean and
  spread over the tokens or positions) and the photos' (after VITAL, Gorgun et al. 2025, who
  match a picture's intermediate feature distributions to real images'), each channel measured
  in units of its spread over the photos;
- the picture's mean saturation (max - min over R, G, B) above the photos' mean saturation.

The photos are the built-in set, measured once per network and layer (the deep
exemplar-statistics prior reads their spread at other layers).
"""
from __future__ import annotations

import threading
import weakref

import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.models.layers import layer_table
from vitviz.models.loaded import LoadedModel
from vitviz.models.tokens import positions as token_positions

_STATS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def first_block(model: LoadedModel) -> str:
    """The model's first block output (a ViT's first transformer block, a CNN's first stage)."""
    for info in layer_table(model):
        if info.role == "block_output":
            return info.name
    raise UserError(f"{model.name} declares no block outputs, which the image priors read: "
                    "set natural_stats, exemplar_stats and exemplar_deep to 0, and start from "
                    "noise rather than an exemplar")


def positions(act: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    """[R, T, C] in fp32: a ViT block's patch tokens, or a CNN feature map's positions (the
    priors' first-block outputs, which always have them)."""
    return token_positions(act.float(), prefix_tokens)


def channel_statistics(act: torch.Tensor, prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's per-channel mean and spread [R, C] over its patch tokens or positions."""
    values = positions(act, prefix_tokens)
    return values.mean(dim=1), values.std(dim=1)


def saturation(images: torch.Tensor) -> torch.Tensor:
    """Each image's mean saturation [N]: max minus min over its colour channels."""
    return (images.amax(dim=1) - images.amin(dim=1)).mean(dim=(1, 2))


@torch.no_grad()
def photo_statistics(model: LoadedModel, layer: str | None = None) -> dict:
    """The built-in photos' statistics at `layer` (the first block when None) and their
    saturation, once per network and layer."""
    layer = layer or first_block(model)
    with _LOCK:
        found = _STATS.get(model.module, {}).get(layer)
    if found is not None:
        return found
    from vitviz.data.photos import load_photos, photo_tensor

    photos = photo_tensor(load_photos(), model.preprocessing.size)
    means, spreads = [], []
    for batch in photos.split(16):
        act = activations(model, model.to_input(batch), [layer])[layer]
        mean, spread = channel_statistics(act, model.prefix_tokens)
        means.append(mean)
        spreads.append(spread)
    mean, spread = torch.cat(means), torch.cat(spreads)
    found = {"layer": layer, "mean": mean.mean(dim=0), "spread": spread.mean(dim=0),
             # How far the channels' means and spreads range over photos: the distance's units.
             "scale": mean.std(dim=0).clamp(min=1e-3), "spread_scale": spread.std(dim=0).clamp(min=1e-3),
             "saturation": float(saturation(photos).mean())}
    with _LOCK:
        _STATS.setdefault(model.module, {})[layer] = found
    return found


def penalty(act: torch.Tensor, prefix_tokens: int, stats: dict) -> torch.Tensor:
    """Per row [R]: how far its first-block statistics lie from the photos', in the photos'
    own spread (about 1 for a photo, far more for a saturated stroke texture)."""
    mean, spread = channel_statistics(act, prefix_tokens)
    device = mean.device
    off_mean = (mean - stats["mean"].to(device)) / stats["scale"].to(device)
    off_spread = (spread - stats["spread"].to(device)) / stats["spread_scale"].to(device)
    return (off_mean.square() + off_spread.square()).mean(dim=1)


def saturation_excess(images: torch.Tensor, stats: dict) -> torch.Tensor:
    """Per image [N]: its mean saturation above the photos' (zero at or below it)."""
    return (saturation(images) - stats["saturation"]).clamp(min=0)
