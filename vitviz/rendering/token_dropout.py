"""Token dropout: each augmented copy shows the network a random part of its patch tokens.

Once positions are added, a ViT's blocks take any number of tokens: each token carries its
place with it. So an augmented copy can enter the first block with only a fraction of its
patch tokens (the prefix tokens always stay). The blocks' work shrinks with the tokens
(matrix products linearly, attention quadratically), and the unit's mean over patch tokens
becomes the mean over the kept ones, an unbiased sample of it. Which tokens a copy keeps is
drawn from its item's augmentation stream, so a picture still depends only on its seed.

It is also an augmentation: a copy's unit sees a random part of the picture as context, so
what the picture learns must drive the unit without leaning on any one region of it. The
recorded activation and every quality figure read the whole, clean image.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from vitviz.models.layers import transformer_blocks
from vitviz.models.loaded import LoadedModel


def first_block(model: LoadedModel) -> str | None:
    """The module whose input is the full token sequence with positions: the first block."""
    return next(iter(transformer_blocks(model)), None)


def kept_count(patches: int, keep: float) -> int:
    return max(1, round(keep * patches))


def kept_indices(rngs: Sequence[torch.Generator], copies: int, patches: int, keep: int,
                  device: torch.device) -> torch.Tensor:
    """[items * copies, keep] sorted patch indices, each row's drawn from its item's stream."""
    rows = [torch.rand(copies, patches, generator=rng, device=device) for rng in rngs]
    return torch.cat(rows).topk(keep, dim=1).indices.sort(dim=1).values


@contextmanager
def kept_tokens(model: LoadedModel, keep: float, rngs: Sequence[torch.Generator],
                copies: int) -> Iterator[None]:
    """Within the block, each row of a pass enters the first block with `keep` of its patch
    tokens (rows in item-major order, `copies` per item); `keep` 1 or a model without token
    blocks: nothing changes."""
    block = first_block(model) if keep < 1 else None
    if block is None:
        yield
        return
    prefix = model.prefix_tokens

    def drop(module, args):
        tokens, *rest = args
        patches = tokens.shape[1] - prefix
        indices = kept_indices(rngs, copies, patches, kept_count(patches, keep), tokens.device)
        kept = tokens[:, prefix:].gather(1, indices[..., None].expand(-1, -1, tokens.shape[2]))
        return (torch.cat([tokens[:, :prefix], kept], dim=1), *rest)

    handle = model.module.get_submodule(block).register_forward_pre_hook(drop)
    try:
        yield
    finally:
        handle.remove()
