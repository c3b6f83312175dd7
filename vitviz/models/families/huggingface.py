"""Hugging Face transformers' vision models (ViT, DeiT, DINOv2 with or without registers,
CLIP's and SigLIP's vision towers), read from the model: the input size and normalisation from
its image processor, the prefix tokens from its embeddings (class token, DeiT's distillation
token, DINOv2's registers), the layer roles from the classes the model itself records as its
layers and attentions (`_can_record_outputs`), named as transformers names them.

Attention is computed by hand through transformers' own attention interface: within vitviz's
context the model's config selects vitviz's implementation, which receives each module's
queries, keys and values and hands back the mixed values, whatever the module calls its
projections.

By name, `hf:ORG/NAME` loads a model from the Hugging Face hub's local cache (its config,
image processor and weights), never from the network unless the operator allows it;
`hf:ORG/NAME:random` is that config's architecture, untrained, at a fixed seed.
"""
from __future__ import annotations

import functools
import json
import re
import weakref
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from vitviz.common.hashing import file_sha256
from vitviz.models.attention_kinds import Attend, AttentionKind
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
    seeded,
    side,
)
from vitviz.models.loaded import LoadedModel, ModelError, WeightsUnavailable, downloads_allowed

IMPLEMENTATION = "vitviz"  # the name vitviz's attention function is registered under
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Parameters of a model's embeddings that put tokens before the patches, in their order.
PREFIX_PARAMETERS = ("cls_token", "class_embedding", "distillation_token", "register_tokens")

# The modules computing by hand now: module -> vitviz's part of its pass, its name bound.
_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, Callable[..., torch.Tensor]]" = (
    weakref.WeakKeyDictionary())


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function signature: [batch, heads, tokens, dim] in, the mixed
    values as [batch, tokens, heads, dim] and no weights out."""
    attend = _ACTIVE.get(module)
    if attend is None:  # another pass on the same network while one computes by hand
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask,
                                               scaling=scaling, dropout=dropout, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return attend(query, key, value, scale, attention_mask).transpose(1, 2).contiguous(), None


@contextmanager
def _installed(modules: dict[str, nn.Module], attend: Attend) -> Iterator[None]:
    configs = {id(m.config): m.config for m in modules.values()}
    before = {key: config._attn_implementation for key, config in configs.items()}
    for name, module in modules.items():
        _ACTIVE[module] = functools.partial(attend, name)
    for config in configs.values():
        config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]
        for module in modules.values():
            _ACTIVE.pop(module, None)


def attention_kind(attention_type: type[nn.Module]) -> AttentionKind:
    library("transformers")
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, _attention)
    return AttentionKind(f"transformers {attention_type.__name__}", (attention_type,), _installed)


def _recorded(model: nn.Module, output: str) -> type[nn.Module] | None:
    """The module class a model records for `output` ("hidden_states": its layers,
    "attentions": their attention): a class, or a recorder naming one."""
    recorded = (getattr(model, "_can_record_outputs", None) or {}).get(output)
    recorded = getattr(recorded, "target_class", recorded)
    return recorded if isinstance(recorded, type) else None


def _activation_types() -> tuple[type[nn.Module], ...]:
    from transformers.activations import ACT2CLS

    return tuple({entry[0] if isinstance(entry, tuple) else entry for entry in ACT2CLS.values()})


def _roles(model: nn.Module) -> tuple[tuple[tuple[str, str], ...], type[nn.Module]]:
    """(layer roles, attention class): the layers are the items of one ModuleList ('layers.N',
    'encoder.layer.N'); in each, its activations are the MLP hidden layer."""
    block_type, attention_type = _recorded(model, "hidden_states"), _recorded(model, "attentions")
    blocks = [name for name, m in model.named_modules() if block_type and type(m) is block_type]
    stem = blocks[0].rpartition(".")[0] if blocks else ""
    if (not blocks or attention_type is None
            or blocks != [f"{stem}.{index}" for index in range(len(blocks))]):
        raise ModelError(f"{type(model).__name__} does not record which modules are its layers "
                         "and attentions (transformers ≥ 5 models do): declare it with "
                         "vitviz.wrap(module, name, size=..., prefix_tokens=..., layer_roles=...).")
    first = model.get_submodule(blocks[0])
    block = re.escape(stem) + r"\.\d+"

    def inside(types) -> list[str]:
        return [block + r"\." + re.escape(name) for name, m in first.named_modules()
                if name and isinstance(m, types)]

    roles = ([(pattern, "mlp_hidden") for pattern in inside(_activation_types())]
             + [(block, "block_output")]
             + [(pattern, "attention_output") for pattern in inside(attention_type)])
    return tuple(roles), attention_type


def _prefix_tokens(model: nn.Module) -> int:
    embeddings = getattr(model, "embeddings", None)
    count = 0
    for attribute in PREFIX_PARAMETERS:
        tensor = getattr(embeddings, attribute, None)
        if isinstance(tensor, torch.Tensor):
            count += 1 if tensor.dim() == 1 else tensor.shape[-2]
    return count


def _processor_fields(processor) -> dict:
    """An image processor's settings: from the processor (or the image processor inside a
    CLIPProcessor and the like), or its preprocessor_config.json as a dict."""
    if processor is None:
        return {}
    if isinstance(processor, dict):
        return processor
    return getattr(processor, "image_processor", processor).to_dict()


def _input_side(fields: dict) -> int | None:
    if fields.get("do_center_crop") and fields.get("crop_size"):
        return side(fields["crop_size"])
    return side(fields.get("size"))


def from_module(model: nn.Module, processor=None, name: str | None = None, *,
                size: int | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, weights_id: str | None = None,
                random_init: bool = False, provenance: dict | None = None) -> LoadedModel:
    """A transformers vision model (or the vision tower of CLIP or SigLIP) as a vitviz model
    (`vitviz.from_huggingface`); `size`, `mean` and `std` override the processor's."""
    library("transformers")
    tower = getattr(model, "vision_model", None)
    model = tower if isinstance(tower, nn.Module) else model
    config = getattr(model, "config", None)
    if config is None:
        raise ModelError(f"{type(model).__name__} is not a transformers model (it has no "
                         "config): declare it with vitviz.wrap(module, name, size=..., ...).")
    fields = _processor_fields(processor)
    mean, std = mean or fields.get("image_mean"), std or fields.get("image_std")
    if mean is None or std is None:
        raise ModelError("a transformers model keeps its normalisation in its image processor: "
                         "pass it, vitviz.from_huggingface(model, AutoImageProcessor."
                         "from_pretrained(...)), or mean=... and std=....")
    size = size or _input_side(fields) or side(getattr(config, "image_size", None))
    if not size:
        raise ModelError(f"{type(model).__name__} does not say its input side: pass size=....")
    roles, attention_type = _roles(model)
    loaded = declared_model(
        model, name or (config.name_or_path or config.model_type).rpartition("/")[2], size=size,
        mean=mean, std=std, prefix_tokens=_prefix_tokens(model), architecture="vit",
        layer_roles=roles, attention=attention_kind(attention_type), weights_id=weights_id,
        random_init=random_init,
        provenance=provenance or {"transformers": version("transformers"),
                                  "wrapped": type(model).__name__})
    return check_tokens(loaded, side(config.patch_size))


# --- by name: hf:ORG/NAME ------------------------------------------------------------------

def check_name(repo: str) -> None:
    """Refuse a name that is not 'ORG/NAME', or a model whose config is not in the local cache
    (where downloads are not allowed)."""
    org, slash, name = repo.partition("/")
    if not slash:
        raise ModelError(f"'{repo[:100]}' is not a Hugging Face model: write hf:ORG/NAME, e.g. "
                         "hf:facebook/dinov2-small.")
    check_part(org, "an organisation on the Hugging Face hub", "facebook")
    check_part(name, "a model on the Hugging Face hub", "dinov2-small")
    if not downloads_allowed() and cached_file(repo, ["config.json"]) is None:
        raise WeightsUnavailable(missing(repo))


def _file(repo: str, names: Sequence[str]) -> Path | None:
    return cached_file(repo, names) or (fetched_file(repo, names) if downloads_allowed() else None)


def available(repo: str) -> bool:
    return all(cached_file(repo, names) is not None for names in (["config.json"], WEIGHT_FILES))


def weights(repo: str, random_init: bool) -> str:
    if random_init:
        return random_weights("transformers")
    path = cached_file(repo, WEIGHT_FILES)
    return file_weights(path) if path is not None else f"hf:{repo}"  # hashed once it is here


def missing(repo: str) -> str:
    # An untrained copy is made from the config, which comes from the cache too.
    return missing_weights(f"The Hugging Face model {repo}", hub_cache(),
                           f"`huggingface-cli download {repo}`", None)


def from_cache(repo: str, random_init: bool) -> LoadedModel:
    """`hf:ORG/NAME`: the model from the hub's local cache (or its architecture, untrained)."""
    transformers = library("transformers")
    config_file = _file(repo, ["config.json"])
    processor_file = _file(repo, ["preprocessor_config.json"])
    weights_file = None if random_init else _file(repo, WEIGHT_FILES)
    if config_file is None or (weights_file is None and not random_init):
        raise WeightsUnavailable(missing(repo))
    if processor_file is None:
        raise ModelError(f"{repo} has no preprocessor_config.json in the cache to read its input "
                         "size and normalisation from: load it yourself and pass them, "
                         "vitviz.from_huggingface(model, mean=..., std=..., size=...).")
    folder = str(config_file.parent)
    if random_init:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        with seeded():
            model = transformers.AutoModel.from_config(config)
        weights_id, provenance = random_weights("transformers"), None
    else:
        # fp32 whatever the checkpoint's dtype: vitviz's arithmetic levers start from fp32.
        model = transformers.AutoModel.from_pretrained(folder, local_files_only=True,
                                                       dtype=torch.float32)
        weights_id = file_weights(weights_file)
        provenance = {"transformers": version("transformers"), "repository": repo,
                      "file": str(weights_file), "sha256": file_sha256(weights_file)}
    return from_module(model, json.loads(processor_file.read_text()), f"hf:{repo}",
                       weights_id=weights_id, random_init=random_init, provenance=provenance)
