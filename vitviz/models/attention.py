"""A ViT's self-attention computed by hand, so that its maps can be read and replaced: what
the moving-target probe records, and what a frozen-context run holds at the start.

A model declares which of its modules are attention (the layer role `attention_output`) and how
they hand over their queries, keys and values (`LoadedModel.attention`, an
`attention_kinds.AttentionKind`); the maps are computed here, the same way for every family. A
model whose attention vitviz cannot compute is refused before anything is allocated
(`check_attention`): a probe with no maps, or a "frozen" run with live attention, would be a
wrong result stored as a right one.
"""
from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

from vitviz.errors import UserError
from vitviz.models.loaded import LoadedModel

SUPPORTED = ("nn.MultiheadAttention (torchvision, OpenCLIP), timm's Attention, and the "
             "attention of Hugging Face ViT, DeiT, DINOv2, CLIP and SigLIP")


class AttentionUnsupported(UserError):
    """A run needs attention maps the model's attention modules do not let vitviz compute."""


def _declared(model: LoadedModel) -> dict[str, nn.Module]:
    """The modules the model declares as attention (role `attention_output`), in network order."""
    patterns = [pattern for pattern, role, _ in model.layer_roles if role == "attention_output"]
    return {name: module for name, module in model.module.named_modules()
            if name and any(re.fullmatch(pattern, name) for pattern in patterns)}


def attention_modules(model: LoadedModel) -> dict[str, nn.Module]:
    """The model's attention modules that its attention kind computes by hand."""
    kind = model.attention
    if kind is None:
        return {}
    return {name: m for name, m in _declared(model).items() if isinstance(m, kind.types)}


def check_attention(model: LoadedModel, use: str) -> None:
    """Refuse `use` (the moving-target probe, a frozen-context run) on a model whose attention
    maps vitviz cannot compute, with the one line that says so."""
    declared = _declared(model)
    kind = model.attention
    foreign = sorted({type(m).__name__ for m in declared.values()
                      if kind is None or not isinstance(m, kind.types)})
    if not declared:
        reason = "declares no attention modules (layer role attention_output)"
    elif foreign:
        reason = f"has attention modules vitviz does not compute by hand yet ({', '.join(foreign)})"
    else:
        return
    raise AttentionUnsupported(f"{use} needs the attention maps of {model.name}, which {reason}; "
                               f"supported: {SUPPORTED}.")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           mask: torch.Tensor | None = None, held: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of [batch, heads, tokens, dim] queries, keys and values: (the values mixed,
    the maps [batch, heads, tokens, tokens]). With `held`, those maps mix the values instead of
    the ones the current tokens produce."""
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores + mask
    maps = torch.softmax(scores, dim=-1)
    return (held if held is not None else maps) @ v, maps


@contextmanager
def explicit_attention_mode(model: LoadedModel, frozen: dict[str, torch.Tensor] | None = None
                            ) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block every attention module of the model records its maps (and mixes with
    the `frozen` ones where given), by module name in the order the modules ran."""
    recorded: dict[str, torch.Tensor] = {}
    modules = attention_modules(model)
    ran: set[str] = set()

    def attend_in(name, q, k, v, scale, mask):
        mixed, maps = attend(q, k, v, scale, mask, frozen.get(name) if frozen else None)
        recorded[name] = maps
        return mixed

    # After each module's forward: one a pass stopped inside (at a target within it) did not run.
    handles = [module.register_forward_hook(lambda *_, name=name: ran.add(name))
               for name, module in modules.items()]
    try:
        with model.attention.install(modules, attend_in) if modules else nullcontext():
            yield recorded
    finally:
        for handle in handles:
            handle.remove()
    # A module that ran on its library's own path (a variant its kind does not reach) would
    # leave its attention live while the run says it was held.
    bypassed = sorted(ran - set(recorded))
    if bypassed:
        raise AttentionUnsupported(f"{', '.join(bypassed)} computed attention on its own path, "
                                   f"not through vitviz's ({model.attention.label}); supported: "
                                   f"{SUPPORTED}.")
