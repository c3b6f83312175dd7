"""Objectives: what to maximise, for token activations [B, T, D] and feature maps [B, C, H, W].

An objective maps the captured activations of a batch to one value per row, in fp32 whatever
the activations' precision: it casts what it reads after picking it, so a bf16 pass never casts
a whole layer for one unit (on a GPU, a [256, 197, 3072] hidden layer per step). Rows are
grouped by item: a batch of `n_items` images, each seen `R // n_items` times under different
augmentations. A unit can be one index for every item or a sequence with one index per item,
so several units run as one batch.

The seed blog post's `activation[:, n]` on a ViT output picks *token* n. `seed_compat` keeps that
behaviour on purpose, so the dashboard can show the difference; `neuron` indexes the last axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F

from vitviz.device_constants import constant
from vitviz.errors import UserError
from vitviz.layers import LayerInfo

Units = Union[int, Sequence[int]]
TOKEN_MODES = ("patch", "cls", "all")
# torchvision's VisionTransformer layout (one class token first): what a plain dict of tensors,
# which does not say, is taken to have. The library's own captures say (layers.Activations).
PREFIX_TOKENS = 1


def prefix_tokens(acts: dict) -> int:
    return getattr(acts, "prefix_tokens", PREFIX_TOKENS)


class UnitOutOfRange(UserError):
    pass


class ObjectiveError(UserError):
    pass


def _per_row(units: Units, rows: int, n_items: int, device) -> torch.Tensor:
    if isinstance(units, int):
        return torch.full((rows,), units, dtype=torch.long, device=device)
    if len(units) != n_items:
        raise ObjectiveError(f"{len(units)} units given for a batch of {n_items} items")
    return constant(units, device, torch.long).repeat_interleave(rows // n_items)


def _unit_list(units: Units) -> list[int]:
    return [units] if isinstance(units, int) else list(units)


def _check_units(units: Units, limit: int, kind: str, layer: str) -> None:
    for unit in _unit_list(units):
        if not 0 <= unit < limit:
            raise UnitOutOfRange(
                f"{kind} {unit} is out of range for {layer}: valid values are 0 to {limit - 1}."
            )


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


def _check_tokens(tokens: str | int, info: LayerInfo) -> None:
    if isinstance(tokens, str):
        if tokens not in TOKEN_MODES:
            raise ObjectiveError(f"token mode '{tokens}' is unknown: use one of {TOKEN_MODES} or an index")
        return
    if info.layout == "tokens" and not 0 <= tokens < info.shape[0]:
        raise UnitOutOfRange(
            f"token {tokens} is out of range for {info.name}: valid tokens are 0 to {info.shape[0] - 1}."
        )


class Objective:
    """Base class: sums (`a + b`) and scalar multiples (`2 * a`) compose objectives."""

    layers: tuple[str, ...] = ()

    def __call__(self, acts: dict[str, torch.Tensor], n_items: int) -> torch.Tensor:
        """[R] values from activations that may be bf16 (cast the part read, not the layer)."""
        raise NotImplementedError

    def validate(self, lookup: Callable[[str], LayerInfo]) -> None:
        """Raise a clear error if a layer, unit or token does not exist."""

    def spec(self) -> dict:
        raise NotImplementedError

    @property
    def target(self) -> "Objective":
        """The part whose activation is reported: regularisers such as diversity are left out."""
        return self

    @property
    def reads_token_positions(self) -> bool:
        """Whether it reads particular token positions, whose meaning a different patch grid
        (a coarse step, vitviz.resolution) would change."""
        return False

    def __add__(self, other: "Objective") -> "Objective":
        return Sum((self, other))

    def __mul__(self, weight: float) -> "Objective":
        return Scaled(self, float(weight))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return Scaled(self, -1.0)

    def __sub__(self, other: "Objective") -> "Objective":
        return Sum((self, Scaled(other, -1.0)))


class _OneLayer(Objective):
    """Objectives that read one layer, named by their `layer` field."""

    layer: str

    @property
    def layers(self):
        return (self.layer,)


def _rows_and_units(act: torch.Tensor, units: Units, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row index, unit of each row) for advanced indexing of a batch of activations."""
    rows = torch.arange(act.shape[0], device=act.device)
    return rows, _per_row(units, act.shape[0], n_items, act.device)


@dataclass(frozen=True)
class Neuron(_OneLayer):
    """Unit `unit` on the last axis of a token layer, reduced over tokens; centre pixel of a map."""

    layer: str
    unit: Units
    tokens: str | int = "patch"

    def __call__(self, acts, n_items):
        act = acts[self.layer]
        index, rows = _rows_and_units(act, self.unit, n_items)
        if act.dim() == 3:
            return reduce_tokens(act[index, :, rows].float(), self.tokens, prefix_tokens(acts))
        if act.dim() == 4:
            h, w = act.shape[2] // 2, act.shape[3] // 2
            return act[index, rows, h, w].float()
        return act[index, rows].float()

    @property
    def reads_token_positions(self):
        return isinstance(self.tokens, int)

    def validate(self, lookup):
        info = lookup(self.layer)
        _check_units(self.unit, info.units, "unit", self.layer)
        _check_tokens(self.tokens, info)

    def spec(self):
        return {"type": "neuron", "layer": self.layer, "unit": self.unit, "tokens": self.tokens}


@dataclass(frozen=True)
class Channel(_OneLayer):
    """Mean over space of channel `unit` of a map; on a token layer, mean over the patch tokens."""

    layer: str
    unit: Units

    def __call__(self, acts, n_items):
        act = acts[self.layer]
        index, rows = _rows_and_units(act, self.unit, n_items)
        if act.dim() == 3:
            return act[index, prefix_tokens(acts):, rows].float().mean(dim=1)
        if act.dim() == 4:
            return act[index, rows].float().mean(dim=(1, 2))
        return act[index, rows].float()

    def validate(self, lookup):
        info = lookup(self.layer)
        _check_units(self.unit, info.units, "channel", self.layer)

    def spec(self):
        return {"type": "channel", "layer": self.layer, "unit": self.unit}


@dataclass(frozen=True)
class Direction(_OneLayer):
    """Projection of the (token- or space-averaged) activation on a direction, e.g. an SAE latent."""

    layer: str
    vector: tuple[float, ...]
    tokens: str | int = "patch"

    def __call__(self, acts, n_items):
        act = acts[self.layer].float()
        direction = constant(self.vector, act.device, act.dtype)
        direction = direction / direction.norm()
        if act.dim() == 3:
            return reduce_tokens(act @ direction, self.tokens, prefix_tokens(acts))
        if act.dim() == 4:
            return torch.einsum("rchw,c->r", act, direction) / (act.shape[2] * act.shape[3])
        return act @ direction

    def validate(self, lookup):
        info = lookup(self.layer)
        if len(self.vector) != info.units:
            raise ObjectiveError(
                f"direction has {len(self.vector)} values but {self.layer} has {info.units} units."
            )
        if not any(self.vector):
            raise ObjectiveError("direction vector is all zeros.")
        _check_tokens(self.tokens, info)

    @property
    def reads_token_positions(self):
        return isinstance(self.tokens, int)

    def spec(self):
        return {"type": "direction", "layer": self.layer, "vector": list(self.vector),
                "tokens": self.tokens}


@dataclass(frozen=True)
class Logit(_OneLayer):
    """A class logit, taken from the model's classifier layer (e.g. `heads.head`)."""

    layer: str
    unit: Units

    def __call__(self, acts, n_items):
        act = acts[self.layer]
        index, rows = _rows_and_units(act, self.unit, n_items)
        return act[index, rows].float()

    def validate(self, lookup):
        _check_units(self.unit, lookup(self.layer).units, "class", self.layer)

    def spec(self):
        return {"type": "logit", "layer": self.layer, "unit": self.unit}


@dataclass(frozen=True)
class SeedCompat(_OneLayer):
    """The seed blog post's `activation[:, n].mean()`: on a [B, T, D] output that is *token* n."""

    layer: str
    unit: Units

    def __call__(self, acts, n_items):
        act = acts[self.layer]
        index, rows = _rows_and_units(act, self.unit, n_items)
        picked = act[index, rows].float()
        return picked.flatten(1).mean(dim=1)

    def validate(self, lookup):
        info = lookup(self.layer)
        # activation[:, n] indexes axis 1 of the output: tokens on a ViT, channels on a CNN.
        _check_units(self.unit, info.shape[0], "activation[:, n] index", self.layer)

    @property
    def reads_token_positions(self):
        return True

    def spec(self):
        return {"type": "seed_compat", "layer": self.layer, "unit": self.unit}


@dataclass(frozen=True)
class Diversity(_OneLayer):
    """Penalises items of a batch that look alike to the layer (Olah et al. 2017).

    Each row is compared with the rows of the other items seen under the same augmentation
    index: on maps through their Gram matrices, on tokens through the token-averaged features.
    """

    layer: str

    def __call__(self, acts, n_items):
        act = acts[self.layer].float()
        rows = act.shape[0]
        if n_items < 2:
            return act.new_zeros(rows)
        if act.dim() == 4:
            flat = act.flatten(2)
            features = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        elif act.dim() == 3:
            features = act[:, prefix_tokens(acts):].mean(dim=1)
        else:
            features = act
        grouped = F.normalize(features, dim=1).view(n_items, rows // n_items, -1)
        similarity = torch.einsum("iek,jek->eij", grouped, grouped)
        off_diagonal = similarity.sum(dim=2) - similarity.diagonal(dim1=1, dim2=2)
        return -(off_diagonal / (n_items - 1)).transpose(0, 1).reshape(rows)

    def validate(self, lookup):
        lookup(self.layer)

    def spec(self):
        return {"type": "diversity", "layer": self.layer}


@dataclass(frozen=True)
class Sum(Objective):
    terms: tuple[Objective, ...]

    @property
    def layers(self):
        return tuple(dict.fromkeys(layer for term in self.terms for layer in term.layers))

    def __call__(self, acts, n_items):
        return sum(term(acts, n_items) for term in self.terms)

    def validate(self, lookup):
        for term in self.terms:
            term.validate(lookup)

    @property
    def target(self):
        kept = [term.target for term in self.terms if not _is_regulariser(term)]
        if not kept:
            return self
        return kept[0] if len(kept) == 1 else Sum(tuple(kept))

    @property
    def reads_token_positions(self):
        return any(term.reads_token_positions for term in self.terms)

    def spec(self):
        return {"type": "sum", "terms": [term.spec() for term in self.terms]}


@dataclass(frozen=True)
class Scaled(Objective):
    inner: Objective
    weight: float

    @property
    def layers(self):
        return self.inner.layers

    def __call__(self, acts, n_items):
        return self.weight * self.inner(acts, n_items)

    def validate(self, lookup):
        self.inner.validate(lookup)

    @property
    def target(self):
        return Scaled(self.inner.target, self.weight)

    @property
    def reads_token_positions(self):
        return self.inner.reads_token_positions

    def spec(self):
        return {"type": "scaled", "weight": self.weight, "inner": self.inner.spec()}


def _is_regulariser(term: Objective) -> bool:
    return isinstance(term, Diversity) or (isinstance(term, Scaled) and _is_regulariser(term.inner))


def neuron(layer: str, unit: Units, tokens: str | int = "patch") -> Objective:
    return Neuron(layer, _freeze_units(unit), tokens)


def channel(layer: str, unit: Units) -> Objective:
    return Channel(layer, _freeze_units(unit))


def direction(layer: str, vector, tokens: str | int = "patch") -> Objective:
    values = vector.detach().flatten().tolist() if isinstance(vector, torch.Tensor) else list(vector)
    return Direction(layer, tuple(float(v) for v in values), tokens)


def logit(layer: str, unit: Units) -> Objective:
    return Logit(layer, _freeze_units(unit))


def seed_compat(layer: str, n: Units) -> Objective:
    return SeedCompat(layer, _freeze_units(n))


def diversity(layer: str, weight: float = 1.0) -> Objective:
    return Scaled(Diversity(layer), weight) if weight != 1.0 else Diversity(layer)


def _freeze_units(unit: Units) -> Units:
    # Tuples keep the frozen dataclasses hashable and their specs JSON-stable.
    return int(unit) if isinstance(unit, int) else tuple(int(u) for u in unit)


_BUILDERS = {
    "neuron": lambda s: neuron(s["layer"], _from_json_units(s["unit"]), s.get("tokens", "patch")),
    "channel": lambda s: channel(s["layer"], _from_json_units(s["unit"])),
    "direction": lambda s: direction(s["layer"], s["vector"], s.get("tokens", "patch")),
    "logit": lambda s: logit(s["layer"], _from_json_units(s["unit"])),
    "seed_compat": lambda s: seed_compat(s["layer"], _from_json_units(s["unit"])),
    "diversity": lambda s: Diversity(s["layer"]),
    "sum": lambda s: Sum(tuple(from_spec(t) for t in s["terms"])),
    "scaled": lambda s: Scaled(from_spec(s["inner"]), float(s["weight"])),
}


@dataclass(frozen=True)
class UnitObjective:
    """An objective that targets one unit of one layer: what the CLI and dashboard offer."""

    description: str
    build: Callable[[str, Units, "str | int"], Objective]  # (layer, unit, token mode)


# The one list the front ends read: a new unit objective added here appears in the CLI's
# --objective and the dashboard's pickers.
UNIT_OBJECTIVES = {
    "neuron": UnitObjective("neuron: one unit, averaged over tokens (ViT) or at the centre (CNN)",
                            lambda layer, unit, tokens: neuron(layer, unit, tokens)),
    "channel": UnitObjective("channel: one unit, averaged over all patches / positions",
                             lambda layer, unit, tokens: channel(layer, unit)),
    "seed_compat": UnitObjective("blog post's activation[:, n]: on a ViT this selects token n",
                                 lambda layer, unit, tokens: seed_compat(layer, unit)),
    "logit": UnitObjective("logit: one class score of the classifier head",
                           lambda layer, unit, tokens: logit(layer, unit)),
}


def unit_objective(kind: str, layer: str, unit: Units, tokens: str | int = "patch") -> Objective:
    if kind not in UNIT_OBJECTIVES:
        raise ObjectiveError(f"unknown objective {kind!r}: use one of {', '.join(UNIT_OBJECTIVES)}")
    return UNIT_OBJECTIVES[kind].build(layer, unit, tokens)


def _from_json_units(unit) -> Units:
    return unit if isinstance(unit, int) else tuple(unit)


def from_spec(spec: dict) -> Objective:
    """Rebuild an objective from `Objective.spec()` (as stored in a result's JSON)."""
    try:
        return _BUILDERS[spec["type"]](spec)
    except KeyError as error:
        raise ObjectiveError(f"not an objective spec: {spec!r} (missing {error})") from error
