"""OpenCLIP's vision towers, read from the model: the input size and normalisation from its
preprocess (or what `open_clip.create_model` set on the tower), one class token, and the roles
of OpenCLIP's layer names (`transformer.resblocks.N`, `.mlp.gelu`, `.attn`). Its blocks use
torch's batch-first nn.MultiheadAttention, which vitviz computes by hand.

By name, `open_clip:ARCH/TAG` loads the tag's weights from the local cache OpenCLIP downloads
to (the Hugging Face hub's), never from the network unless the operator allows it;
`open_clip:ARCH:random` is OpenCLIP's initialisation at a fixed seed.
"""
from __future__ import annotations

import difflib
import os
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

from torch import nn

from vitviz.common.hashing import file_sha256
from vitviz.models.attention_kinds import MULTIHEAD
from vitviz.models.declared import declared_model
from vitviz.models.families.common import (
    cached_file,
    check_part,
    check_tokens,
    fetched_file,
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
    (r"transformer\.resblocks\.\d+\.mlp\.gelu", "mlp_hidden"),
    (r"transformer\.resblocks\.\d+", "block_output"),
    (r"transformer\.resblocks\.\d+\.attn", "attention_output"),
)


def _preprocess_fields(preprocess) -> dict:
    """Size, mean and std from a preprocess pipeline (torchvision transforms): the Normalize's,
    and the side of its last sized step (the centre crop)."""
    steps = getattr(preprocess, "transforms", None) or []
    normalise = [step for step in steps if hasattr(step, "mean") and hasattr(step, "std")]
    sized = [step for step in steps if hasattr(step, "size")]
    return {**({"mean": normalise[-1].mean, "std": normalise[-1].std} if normalise else {}),
            **({"size": side(sized[-1].size)} if sized else {})}


def from_module(model: nn.Module, preprocess=None, name: str | None = None, *,
                size: int | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, weights_id: str | None = None,
                random_init: bool = False, provenance: dict | None = None) -> LoadedModel:
    """An OpenCLIP model's vision tower (or the tower itself) as a vitviz model
    (`vitviz.from_open_clip`); `size`, `mean` and `std` override the preprocess's."""
    library("open_clip")
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        trunk = " (a timm trunk: vitviz.from_timm(model.visual.trunk, ...))" \
            if hasattr(visual, "trunk") else ""
        raise ModelError(f"{type(visual).__name__} is not OpenCLIP's VisionTransformer tower"
                         f"{trunk}; declare it with vitviz.wrap(module, name, size=..., ...).")
    if not getattr(visual.transformer, "batch_first", False):
        raise ModelError("this OpenCLIP tower runs its blocks sequence-first, which vitviz does "
                         "not read: build it with open_clip 3, whose blocks run batch-first.")
    fields = _preprocess_fields(preprocess)
    mean = mean or fields.get("mean") or getattr(visual, "image_mean", None)
    std = std or fields.get("std") or getattr(visual, "image_std", None)
    if mean is None or std is None:
        raise ModelError("this OpenCLIP tower does not say its normalisation: pass the preprocess "
                         "open_clip.create_model_and_transforms returns, "
                         "vitviz.from_open_clip(model, preprocess), or mean=... and std=....")
    size = size or fields.get("size") or side(visual.image_size)
    loaded = declared_model(
        visual, name or "open_clip", size=size, mean=mean, std=std, prefix_tokens=1,
        architecture="vit", layer_roles=ROLES, attention=MULTIHEAD, weights_id=weights_id,
        random_init=random_init,
        provenance=provenance or {"open_clip": version("open-clip-torch"),
                                  "wrapped": type(model).__name__})
    return check_tokens(loaded, side(visual.patch_size))


# --- by name: open_clip:ARCH/TAG and open_clip:ARCH:random -----------------------------------

def _split(spec: str) -> tuple[str, str]:
    architecture, _, tag = spec.partition("/")
    return architecture, tag


def check_name(spec: str) -> None:
    architecture, tag = _split(spec)
    check_part(architecture, "an OpenCLIP architecture", "ViT-B-32")
    open_clip = library("open_clip")
    if architecture not in open_clip.list_models():
        close = difflib.get_close_matches(architecture, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"OpenCLIP has no architecture '{architecture}'.{hint} "
                         "`open_clip.list_models()` lists them.")
    if tag and not open_clip.get_pretrained_cfg(architecture, tag):
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        raise ModelError(f"OpenCLIP has no weights '{tag}' for {architecture}; it has "
                         f"{', '.join(tags) or 'none'}.")


def _hub(spec: str) -> tuple[str, list[str]] | None:
    """The hub repository and file names of a tag's checkpoint, as OpenCLIP fetches them."""
    cfg = library("open_clip").get_pretrained_cfg(*_split(spec))
    if not cfg.get("hf_hub"):
        return None
    repo, filename = os.path.split(cfg["hf_hub"])  # 'org/name/file', or 'org/name/' for the default
    return repo, safe_alternative(filename or "open_clip_pytorch_model.bin")


def _cached(spec: str) -> Path | None:
    hub = _hub(spec) if _split(spec)[1] else None
    return cached_file(*hub) if hub else None


def available(spec: str) -> bool:
    return _cached(spec) is not None


def weights(spec: str, random_init: bool) -> str:
    if random_init:
        return random_weights("open-clip-torch")
    path = _cached(spec)
    return file_weights(path) if path is not None else f"open_clip:{spec}"


def missing(spec: str) -> str:
    hub = _hub(spec) if _split(spec)[1] else None
    if hub is None:
        return (f"open_clip:{spec} names no weights on the Hugging Face hub: write "
                "open_clip:ARCH/TAG with a tag that has them, or open_clip:ARCH:random.")
    return missing_weights(f"OpenCLIP's checkpoint of {spec}", hub_cache(),
                           f"`huggingface-cli download {hub[0]}`", f"open_clip:{spec}")


def from_cache(spec: str, random_init: bool) -> LoadedModel:
    """`open_clip:ARCH/TAG`: the tower with the tag's checkpoint from the local cache."""
    open_clip = library("open_clip")
    architecture, tag = _split(spec)
    if random_init:
        with seeded():
            model = open_clip.create_model(architecture, pretrained=None)
        return from_module(model, name=f"open_clip:{architecture}",
                           weights_id=random_weights("open-clip-torch"), random_init=True)
    hub, path = _hub(spec) if tag else None, _cached(spec)
    if path is None and hub is not None and downloads_allowed():
        path = fetched_file(*hub)
    if path is None:
        raise WeightsUnavailable(missing(spec))
    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    # Given a file rather than its tag, OpenCLIP does not apply the tag's activation and
    # normalisation: they are passed on, or OpenAI's weights would run with the wrong GELU.
    model = open_clip.create_model(
        architecture, pretrained=str(path), force_quick_gelu=bool(cfg.get("quick_gelu")),
        force_preprocess_cfg={key: cfg[key] for key in ("mean", "std") if key in cfg})
    return from_module(model, name=f"open_clip:{spec}", weights_id=file_weights(path),
                       provenance={"open_clip": version("open-clip-torch"), "tag": spec,
                                   "file": str(path), "sha256": file_sha256(path)})
