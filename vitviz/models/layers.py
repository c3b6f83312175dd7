"""Layer discovery: every hookable module, named as `named_modules()` prints it, with its shape."""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from vitviz.errors import UserError
from vitviz.models.hooks import output_tensor
from vitviz.models.loaded import LoadedModel, Preprocessing

ROLE_LABELS = {
    "mlp_hidden": "MLP hidden (after GELU): recommended for neurons",
    "block_output": "block output (residual stream)",
    "attention_output": "attention output",
    "logits": "class logits",
}


class UnknownLayer(UserError):
    pass


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...]  # without the batch axis
    layout: str  # "tokens" [T, D], "map" [C, H, W], "vector" [D], or "other"
    role: str  # one of ROLE_LABELS, or ""
    calls: int  # how often the module runs per forward pass; hooks see the last call

    @property
    def recommended(self) -> bool:
        return self.role == "mlp_hidden" or (self.role == "block_output" and self.layout == "map")

    @property
    def units(self) -> int:
        """Size of the axis that objectives index by unit: D for tokens and vectors, C for maps."""
        if self.layout == "tokens":
            return self.shape[1]
        return self.shape[0] if self.shape else 0


@dataclass(frozen=True)
class ModelCard:
    """What the dashboard shows and checks about a model, without the network: its name and
    label, how it is fed, its token layout and its layer table. Stored on disk (as JSON) by the
    dashboard, so a link to a cached run renders without loading the model.

    It answers `layer_table`, `find_layer` and `default_layer` as the model itself does.
    """

    name: str
    registry_name: str
    label: str
    architecture: str
    preprocessing: Preprocessing
    prefix_tokens: int
    weights_id: str
    logits_layer: str | None
    layers: tuple[LayerInfo, ...]

    @classmethod
    def of(cls, model: LoadedModel) -> "ModelCard":
        return cls(model.name, model.registry_name, model.label, model.architecture,
                   model.preprocessing, model.prefix_tokens, model.weights_id, model.logits_layer,
                   tuple(layer_table(model)))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "ModelCard":
        p = record["preprocessing"]
        return cls(**{**record,
                      "preprocessing": Preprocessing(tuple(p["mean"]), tuple(p["std"]), p["size"]),
                      "layers": tuple(LayerInfo(**{**info, "shape": tuple(info["shape"])})
                                      for info in record["layers"])})


def _layout(shape: tuple[int, ...]) -> str:
    return {1: "vector", 2: "tokens", 3: "map"}.get(len(shape), "other")


def _role(model: LoadedModel, name: str, layout: str) -> str:
    if name == model.logits_layer:
        return "logits"
    for pattern, role, needs_layout in model.layer_roles:
        if re.fullmatch(pattern, name) and needs_layout in (None, layout):
            return role
    return ""


_TABLES: "weakref.WeakKeyDictionary[nn.Module, list[LayerInfo]]" = weakref.WeakKeyDictionary()


def layer_table(model: LoadedModel | ModelCard) -> list[LayerInfo]:
    """All modules with a tensor output, in forward order, from one dry run (cached per model)."""
    if isinstance(model, ModelCard):
        return list(model.layers)
    if model.module in _TABLES:
        return _TABLES[model.module]
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, str] = {}
    calls: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module, _inputs, output):
            tensor = output_tensor(output)
            if tensor is None:
                return
            shapes[name] = tuple(tensor.shape[1:])
            types[name] = type(module).__name__
            calls[name] = calls.get(name, 0) + 1

        return hook

    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in model.module.named_modules()
        if name
    ]
    size = model.preprocessing.size
    try:
        with torch.no_grad():
            # In the weights' own dtype: a copy held in bf16 (vitviz.rendering.precision) runs its own.
            model.module(torch.zeros(1, 3, size, size, device=model.device, dtype=model.dtype))
    finally:
        for handle in handles:
            handle.remove()
    table = [
        LayerInfo(name, types[name], shapes[name], _layout(shapes[name]),
                  _role(model, name, _layout(shapes[name])), calls[name])
        for name in shapes
    ]
    _TABLES[model.module] = table
    return table


MAX_LAYER_NAME = 512  # characters: the longest module name of any registered model is < 100


def find_layer(model: LoadedModel | ModelCard, name: str) -> LayerInfo:
    """The layer called `name`; an unknown name fails with the closest real names."""
    table = {info.name: info for info in layer_table(model)}
    if isinstance(name, str) and name in table:
        return table[name]
    if not isinstance(name, str) or len(name) > MAX_LAYER_NAME:
        # Checked before the close-match search, whose cost grows with the name's length.
        raise UnknownLayer(f"a layer is named by at most {MAX_LAYER_NAME} characters: list "
                           f"them with `python -m vitviz layers --model {model.name}`.")
    close = difflib.get_close_matches(name, table, n=5, cutoff=0.5)
    hint = f" Closest matches: {', '.join(close)}." if close else ""
    raise UnknownLayer(
        f"Layer '{name}' is not a module of {model.name}.{hint} "
        f"List all layers with `python -m vitviz layers --model {model.name}`."
    )


def transformer_blocks(model: LoadedModel | ModelCard) -> list[str]:
    """The model's transformer blocks in forward order: layers it declares as block outputs
    with tokens (none for a CNN)."""
    return [info.name for info in layer_table(model)
            if info.role == "block_output" and info.layout == "tokens"]


def block_depth(model: LoadedModel | ModelCard, layer: str) -> float | None:
    """How far into the model `layer` sits: the share of its declared block outputs that run
    up to and including the layer's own block (block 8 of 12 is 0.75, the last block 1.0; a
    layer after the last block is 1.0). None for a model that declares no block outputs."""
    blocks = [info.name for info in layer_table(model) if info.role == "block_output"]
    if not blocks:
        return None
    names = [info.name for info in layer_table(model)]
    if layer not in names:
        raise UnknownLayer(f"{layer} is not a layer of {model.name}")
    at = names.index(layer)
    before = sum(1 for name in blocks if names.index(name) < at)
    return min(before + 1, len(blocks)) / len(blocks)


def recommended_layers(model: LoadedModel | ModelCard) -> list[LayerInfo]:
    return [info for info in layer_table(model) if info.recommended]


def default_layer(model: LoadedModel | ModelCard) -> str:
    """A good first layer: the MLP hidden layer of the middle ViT block, or a middle CNN block."""
    candidates = [info for info in recommended_layers(model) if info.role == "mlp_hidden"]
    candidates = candidates or recommended_layers(model) or layer_table(model)
    return candidates[len(candidates) // 2].name


MAX_LAYER_PATTERNS = 64
_GLOB = re.compile(r"[*?\[]")


def match_layers(model: LoadedModel | ModelCard, patterns) -> list[str]:
    """The layers that `patterns` name, in forward order, each once. A pattern is a layer's
    name, a role (`mlp_hidden`: every MLP hidden layer, `block_output`, `attention_output`,
    `logits`), or a shell pattern over the names (`encoder.layers.*.mlp.1`). A pattern that
    names nothing fails with the closest names, before anything runs."""
    patterns = list(patterns)
    if not 1 <= len(patterns) <= MAX_LAYER_PATTERNS:
        raise UnknownLayer(f"name 1 to {MAX_LAYER_PATTERNS} layers or patterns "
                           f"(got {len(patterns)}).")
    table = [info for info in layer_table(model) if info.units]
    chosen: set[str] = set()
    for pattern in patterns:
        if pattern in ROLE_LABELS:
            found = [info.name for info in table if info.role == pattern]
        elif isinstance(pattern, str) and _GLOB.search(pattern):
            if len(pattern) > MAX_LAYER_NAME:
                raise UnknownLayer(f"a pattern has at most {MAX_LAYER_NAME} characters.")
            found = [info.name for info in table if fnmatch.fnmatchcase(info.name, pattern)]
        else:
            found = [find_layer(model, pattern).name]
        if not found:
            close = difflib.get_close_matches(pattern.replace("*", "0"), [i.name for i in table],
                                              n=3, cutoff=0.5)
            hint = f" Closest names: {', '.join(close)}." if close else ""
            raise UnknownLayer(f"'{pattern}' matches no layer of {model.name} with units.{hint} "
                               f"Roles: {', '.join(ROLE_LABELS)}.")
        chosen.update(found)
    return [info.name for info in table if info.name in chosen]
