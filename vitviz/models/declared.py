"""A LoadedModel from any nn.Module and what its maker declares about it: the one way a model
that vitviz does not build itself is made, by `registry.wrap` and by the library families
(`models/families/`), which read the declaration from the model instead of asking for it."""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import nn

from vitviz.models.attention_kinds import MULTIHEAD, AttentionKind
from vitviz.models.layers import ROLE_LABELS
from vitviz.models.loaded import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelError,
    Preprocessing,
)


def tensors_sha256(module: nn.Module) -> str:
    """A hash of every parameter and buffer, by name: two modules with equal weights agree."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def frozen(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def declared_model(
    module: nn.Module,
    name: str,
    *,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    prefix_tokens: int = 0,
    architecture: str | None = None,
    class_names: list[str] | None = None,
    logits_layer: str | None = None,
    layer_roles: Sequence[tuple[str, str]] | None = None,
    attention: AttentionKind | None = MULTIHEAD,
    weights_id: str | None = None,
    random_init: bool = False,
    provenance: dict | None = None,
) -> LoadedModel:
    """`module`, frozen in place, with its declaration checked (see `registry.wrap` for the
    arguments). Its weights are named by `weights_id`, by default the sha256 of its tensors."""
    if not isinstance(module, nn.Module):
        raise ModelError(f"wrap() takes an nn.Module, not {type(module).__name__}.")
    if not (isinstance(size, int) and 8 <= size <= 4096):
        raise ModelError(f"size must be the input side in pixels, 8 to 4096 (got {size!r}).")
    if not (isinstance(prefix_tokens, int) and prefix_tokens >= 0):
        raise ModelError(f"prefix_tokens must be a whole number ≥ 0 (got {prefix_tokens!r}).")
    if len(tuple(mean)) != 3 or len(tuple(std)) != 3 or not all(s > 0 for s in std):
        raise ModelError(f"mean and std are one number per RGB channel, std above 0 "
                         f"(got {tuple(mean)!r}, {tuple(std)!r}).")
    architecture = architecture or ("vit" if prefix_tokens else "cnn")
    if architecture not in ("vit", "cnn"):
        raise ModelError(f"architecture must be 'vit' or 'cnn' (got {architecture!r}).")
    roles = None
    if layer_roles is not None:
        roles = tuple((pattern, role, None) for pattern, role in layer_roles)
        unknown = sorted({role for _, role, _ in roles} - set(ROLE_LABELS))
        if unknown:
            raise ModelError(f"unknown layer roles {unknown}: use {', '.join(ROLE_LABELS)}.")
    return LoadedModel(
        name=name, module=frozen(module),
        preprocessing=Preprocessing(tuple(float(m) for m in mean),
                                    tuple(float(s) for s in std), size),
        weights_id=weights_id or f"sha256:{tensors_sha256(module)}", architecture=architecture,
        class_names=class_names, logits_layer=logits_layer,
        provenance={"wrapped": type(module).__qualname__} if provenance is None else provenance,
        random_init=random_init, prefix_tokens=prefix_tokens, layer_roles=roles,
        attention=attention,
    )
