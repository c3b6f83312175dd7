"""A token layer's layout, and a unit's value read from a layer's output.

A ViT's token layer is [batch, tokens, dim] with its prefix tokens (class token, registers)
before the patch tokens; a model declares how many (`LoadedModel.prefix_tokens`) and the
library's forward pass hands that on with every capture (`forward.Activations`). A unit's value
reduces the tokens as the token mode says; a feature map's channel is averaged over space.
"""
from __future__ import annotations

import torch

TOKEN_MODES = ("patch", "cls", "all")
# torchvision's VisionTransformer layout (one class token first): what a plain dict of tensors,
# which does not say, is taken to have. The library's own captures say (forward.Activations).
PREFIX_TOKENS = 1


def prefix_tokens(acts: dict) -> int:
    return getattr(acts, "prefix_tokens", PREFIX_TOKENS)


def reduce_tokens(values: torch.Tensor, tokens: str | int,
                  prefix: int = PREFIX_TOKENS) -> torch.Tensor:
    """[R, T, ...] per-token values -> [R, ...] according to the token mode."""
    if tokens == "patch":
        return values[:, prefix:].mean(dim=1)
    if tokens == "cls":
        return values[:, 0]
    if tokens == "all":
        return values.mean(dim=1)
    return values[:, tokens]


def unit_values(act: torch.Tensor, tokens: str | int = "patch",
                prefix: int = PREFIX_TOKENS) -> torch.Tensor:
    """Every unit's value [R, units] of a layer output: tokens reduced, maps averaged over space."""
    if act.dim() == 3:
        return reduce_tokens(act, tokens, prefix)
    if act.dim() == 4:
        return act.mean(dim=(2, 3))
    return act


def positions(act: torch.Tensor, prefix: int = PREFIX_TOKENS) -> torch.Tensor | None:
    """[R, positions, channels] of a layer output: a token layer's patch tokens, a feature
    map's cells; None for a layer without positions (a classifier's logits)."""
    if act.dim() == 3:
        return act[:, prefix:]
    if act.dim() == 4:
        return act.flatten(2).transpose(1, 2)
    return None
