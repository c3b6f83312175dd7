"""timm's ViTs, read from the model: input size and normalisation from its `pretrained_cfg`,
prefix tokens from `num_prefix_tokens` (class token, registers, DeiT's distillation token),
the roles of timm's layer names (`blocks.N`, `blocks.N.mlp.act`, `blocks.N.attn`), and its
`Attention` computed by hand for the moving-target probe and frozen-context runs.

By name, `timm:NAME[.TAG]` loads the pretrained weights from the cache timm downloads them to
(the Hugging Face hub's, or torch hub's for weights timm fetches from a URL), never from the
network unless the operator allows it; `timm:NAME:random` is timm's initialisation at a fixed
seed.
"""
from __future__ import annotations

import difflib
import os
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from vitviz.common.hashing import file_sha256
from vitviz.errors import UserError
from vitviz.models.attention_kinds import Attend, AttentionKind, merge_heads, replaced_forwards
from vitviz.models.declared import declared_model
from vitviz.models.families.common import (
    cached_file,
    check_part,
    check_tokens,
    file_weights,
    hub_cache,
    library,
    missing_weights,
    random_weights,
    safe_alternative,
    seeded,
    side,
)
from vitviz.models.loaded import LoadedModel, ModelError, WeightsUnavailable, downloads_allowed

ROLES = (
    (r"blocks\.\d+\.mlp\.act", "mlp_hidden"),
    (r"blocks\.\d+", "block_output"),
    (r"blocks\.\d+\.attn", "attention_output"),
)


def _forward(name: str, attention: nn.Module, attend: Attend) -> Callable:
    """timm's Attention.forward with vitviz's maps in the middle."""
    def forward(x, attn_mask=None, is_causal=False):
        if attn_mask is not None or is_causal:
            raise UserError(f"{name}: masked attention is not computed by hand; vitviz holds "
                            "the maps of a ViT's self-attention only")
        batch, tokens, _ = x.shape
        gate = getattr(attention, "gate", None)
        q, k, v = (attention.qkv(x).reshape(batch, tokens, 3, attention.num_heads, -1)
                   .permute(2, 0, 3, 1, 4))
        mixed = attend(name, attention.q_norm(q), attention.k_norm(k), v, attention.scale, None)
        out = attention.norm(merge_heads(mixed))
        if gate is not None:
            out = out * gate(x).sigmoid()
        return attention.proj_drop(attention.proj(out))

    return forward


def attention_kind() -> AttentionKind:
    library("timm")
    from timm.layers import Attention

    return AttentionKind("timm Attention", (Attention,), lambda modules, attend: replaced_forwards(
        modules, lambda name, module: _forward(name, module, attend)))


def from_module(module: nn.Module, name: str | None = None, *, size: int | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                weights_id: str | None = None, random_init: bool = False,
                provenance: dict | None = None) -> LoadedModel:
    """A timm ViT as a vitviz model (`vitviz.from_timm`); `size`, `mean` and `std` override
    what its `pretrained_cfg` says."""
    library("timm")
    kind = type(module).__name__
    if not (hasattr(module, "num_prefix_tokens") and hasattr(module, "blocks")
            and hasattr(module, "patch_embed")):
        raise ModelError(f"{kind} is not a timm ViT with a token sequence (num_prefix_tokens, "
                         "blocks, patch_embed): declare it with vitviz.wrap(module, name, "
                         "size=..., mean=..., std=..., prefix_tokens=...).")
    cfg = dict(getattr(module, "pretrained_cfg", None) or {})
    mean, std = mean or cfg.get("mean"), std or cfg.get("std")
    if mean is None or std is None:
        raise ModelError(f"this {kind} has no pretrained_cfg to read its normalisation from (it "
                         "was not made by timm.create_model): pass mean=... and std=..., the "
                         "values it was trained with.")
    # The side its position table was made for, which a model built with img_size= changes.
    size = (size or side(getattr(module.patch_embed, "img_size", None))
            or side(cfg.get("input_size")))
    if not size:
        raise ModelError(f"this {kind} does not take square images of one size: pass size=....")
    patch = side(module.patch_embed.patch_size)
    # The class logits: timm's classifier, where it is one linear head (DeiT's is two).
    classifier = cfg.get("classifier")
    logits = classifier if (isinstance(classifier, str) and getattr(module, "num_classes", 0)
                            and isinstance(getattr(module, classifier, None), nn.Linear)) else None
    loaded = declared_model(
        module, name or cfg.get("architecture") or kind, size=size, mean=mean, std=std,
        prefix_tokens=int(module.num_prefix_tokens), architecture="vit", logits_layer=logits,
        layer_roles=ROLES, attention=attention_kind(), weights_id=weights_id,
        random_init=random_init,
        provenance=provenance or {"timm": version("timm"), "wrapped": kind})
    return check_tokens(loaded, patch)


# --- by name: timm:NAME[.TAG] --------------------------------------------------------------

def check_name(name: str) -> None:
    """Refuse a name timm does not know, with its closest architectures."""
    check_part(name, "a timm model name", "vit_base_patch16_224 or vit_small_patch14_reg4_dinov2")
    timm = library("timm")
    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"timm has no model '{architecture}'.{hint} "
                         "`timm.list_models('vit_*')` lists them.")
    if tag and _pretrained_cfg(name) is None:
        raise ModelError(f"timm has no pretrained weights '{tag}' for {architecture}: "
                         f"`timm.list_pretrained('{architecture}*')` lists them.")


def _pretrained_cfg(name: str):
    library("timm")
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag
        return None


def _hub_files(cfg) -> list[str]:
    return safe_alternative(cfg.hf_hub_filename or "pytorch_model.bin")


def _url_file(cfg) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)


def _cached(name: str) -> Path | None:
    """The checkpoint of `name` where timm keeps it, if it is there."""
    cfg = _pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        return cached_file(cfg.hf_hub_id, _hub_files(cfg))
    return _url_file(cfg) if cfg.url and _url_file(cfg).is_file() else None


def available(name: str) -> bool:
    return _cached(name) is not None


def weights(name: str, random_init: bool) -> str:
    if random_init:
        return random_weights("timm")
    path = _cached(name)
    if path is not None:
        return file_weights(path)
    cfg = _pretrained_cfg(name)
    # Not here yet: the checkpoint timm would fetch, hashed once it is here.
    return f"timm:{cfg.hf_hub_id or cfg.url}" if cfg is not None else "missing"


def missing(name: str) -> str:
    cfg = _pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return f"timm has no pretrained weights for '{name}'; 'timm:{name}:random' needs none."
    where = hub_cache() if cfg.hf_hub_id else _url_file(cfg).parent
    fetch = (f"`huggingface-cli download {cfg.hf_hub_id}`" if cfg.hf_hub_id
             else f"`timm.create_model('{name}', pretrained=True)`")
    return missing_weights(f"timm's checkpoint of {name}", where, fetch, f"timm:{name}")


def from_cache(name: str, random_init: bool) -> LoadedModel:
    """`timm:NAME`: timm's network with the checkpoint from the local cache (or untrained)."""
    timm = library("timm")
    if random_init:
        with seeded():
            module = timm.create_model(name, pretrained=False)
        return from_module(module, f"timm:{name}", weights_id=random_weights("timm"),
                           random_init=True)
    cfg, path = _pretrained_cfg(name), _cached(name)
    if path is None and cfg is not None and downloads_allowed():
        timm.create_model(name, pretrained=True)  # fetches the checkpoint into timm's cache
        path = _cached(name)
    if path is None:
        raise WeightsUnavailable(missing(name))
    # The file is given to timm, which applies its own checkpoint conversion; a checkpoint
    # from the hub is a plain state dict even where the URL's original needs a custom loader.
    overlay = {"file": str(path), **({"custom_load": False} if cfg.hf_hub_id else {})}
    module = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    return from_module(module, f"timm:{name}", weights_id=file_weights(path),
                       provenance={"timm": version("timm"), "checkpoint": cfg.hf_hub_id or cfg.url,
                                   "file": str(path), "sha256": file_sha256(path)})
