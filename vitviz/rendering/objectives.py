"""Objectives: what to maximise, for token activations [B, T, D] and feature maps [B, C, H, W].

An objective maps the captured activations of a batch to one value per row, in fp32 whatever
the activations' precision: it casts what it reads after picking it, so a bf16 pass never casts
a whole layer for one unit (on a GPU, a [256, 197, 3072] hidden layer per step). Rows are
grouped by item: a batch of `n_items` images, each seen `R // n_items` times under different
augmentations. A unit can be one index for every item or a sequence with one index per item,
so several units run as one batch.

The seed blog post's `activation[:, n]` on a ViT output picks *token* n. `seed_compat` keeps that
behaviour on purpose, so the dashboard can show the difference; `neuron` indexes the last axis.

One registry (`register`, `OBJECTIVE_TYPES`) maps a spec's "type" to the class that rebuilds
it: the built-ins and a user's own, which `visualise()` and the cache then serve alike. Its
entries with a `unit` are the unit objectives the CLI and the dashboard offer.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F

from vitviz.common.device_constants import constant
from vitviz.errors import UserError
from vitviz.models.layers import LayerInfo
from vitviz.models.tokens import TOKEN_MODES, prefix_tokens, reduce_tokens

Units = Union[int, Sequence[int]]
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
        (a coarse step, vitviz.models.resolution) would change."""
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


def rows_and_units(act: torch.Tensor, units: Units, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
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
        index, rows = rows_and_units(act, self.unit, n_items)
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
        index, rows = rows_and_units(act, self.unit, n_items)
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


# The objectives that name one unit of a layer, whose photos rank the layer's views: the
# ones a picture can borrow from its unit's photos for (vitviz.rendering.exemplar_stats).
UNIT_TYPES = ("neuron", "channel")


def reads_one_unit(objective: Objective) -> bool:
    """Whether `objective` is a unit's own (a neuron or channel, one unit per item)."""
    return isinstance(objective, (Neuron, Channel))


def item_units(objective: "Neuron | Channel", n_items: int) -> list[int]:
    """Each item's unit: the objective's units, one per item, or its one unit for all."""
    unit = objective.unit
    return list(unit) if isinstance(unit, tuple) else [unit] * n_items


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
        index, rows = rows_and_units(act, self.unit, n_items)
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
        index, rows = rows_and_units(act, self.unit, n_items)
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


@dataclass(frozen=True)
class UnitObjective:
    """An objective that targets one unit of one layer: what the CLI and dashboard offer."""

    description: str
    build: Callable[[str, Units, "str | int"], Objective]  # (layer, unit, token mode)


@dataclass(frozen=True)
class ObjectiveType:
    """One entry of the registry: the class a spec's "type" names, how a spec is rebuilt and,
    for an objective on one unit of one layer, how the CLI and the dashboard offer it."""

    name: str
    cls: type
    build: Callable[[dict], Objective]  # spec -> objective
    unit: UnitObjective | None = None


# The one registry of objectives: spec "type" -> entry, the built-ins (registered at the end of
# this module) and a user's own (`register`). `from_spec`, and so `visualise()`, the cache and
# the dashboard's reading of stored results, rebuild objectives through it; the unit objectives
# the CLI's --objective and the dashboard's pickers offer are its entries with a `unit`.
_TYPES: dict[str, ObjectiveType] = {}
OBJECTIVE_TYPES: Mapping[str, ObjectiveType] = MappingProxyType(_TYPES)


def register(name: str, *, build: Callable[[dict], Objective] | None = None,
             description: str | None = None,
             unit: Callable[[str, Units, "str | int"], Objective] | None = None):
    """Class decorator: objectives of the class rebuild from their spec, so they run through
    `visualise()` and the cache like the built-ins.

    The class is a frozen dataclass subclass of `Objective` whose `spec()` returns
    `{"type": name, ...}` with JSON values. By default a spec is rebuilt as `cls(**fields)`
    (JSON lists as tuples); `build(spec)` replaces that. With `description` and
    `unit(layer, unit, tokens)` it is also a unit objective: `unit_objective(name, ...)` and the
    CLI's --objective offer it. A name another class holds is refused.
    """
    def add(cls):
        _check_registrable(name, cls, build, description, unit)
        _TYPES[name] = ObjectiveType(name, cls, build or _field_builder(cls),
                                     UnitObjective(description, unit) if unit else None)
        return cls

    return add


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_registrable(name, cls, build, description, unit) -> None:
    if not isinstance(name, str) or not name:
        raise ObjectiveError(f"an objective type's name is a non-empty string (got {name!r})")
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ObjectiveError(f"register({name!r}) takes a subclass of Objective (got {cls!r})")
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
        raise ObjectiveError(f"{cls.__qualname__} must be a @dataclass(frozen=True): objectives "
                             "are frozen values, rebuilt from their spec")
    if cls.spec is Objective.spec:
        raise ObjectiveError(f"{cls.__qualname__} needs a spec() returning "
                             f"{{\"type\": {name!r}, ...}} with JSON values")
    if build is not None and not callable(build):
        raise ObjectiveError(f"build for {name!r} is a function of the spec (got {build!r})")
    if (unit is None) != (description is None) or (unit is not None and not callable(unit)):
        raise ObjectiveError(f"a unit objective ({name!r}) takes both a description and "
                             "unit(layer, unit, tokens) -> objective")
    taken = _TYPES.get(name)
    if taken is None:
        return
    # A class defined again (a notebook cell run twice) takes its name back; a built-in never.
    same = taken.cls is cls or _where(taken.cls) == _where(cls)
    if not same or taken.cls.__module__ == __name__:
        owner = "a built-in" if taken.cls.__module__ == __name__ else "another class"
        raise ObjectiveError(f"objective type {name!r} is taken by {_where(taken.cls)} ({owner}): "
                             f"register {cls.__qualname__} under another name")


def _from_json(value):
    """A spec value as a field: JSON lists become tuples, so frozen objectives stay hashable."""
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


def _field_builder(cls: type) -> Callable[[dict], Objective]:
    def build(spec: dict) -> Objective:
        fields = {key: _from_json(value) for key, value in spec.items() if key != "type"}
        try:
            return cls(**fields)
        except TypeError as error:
            raise ObjectiveError(f"cannot rebuild {cls.__qualname__} from {spec!r}: {error}") from error

    return build


class _UnitObjectives(Mapping):
    """kind -> UnitObjective: the registry's unit objectives, read live, in registration order."""

    def __getitem__(self, kind: str) -> UnitObjective:
        entry = _TYPES.get(kind)
        if entry is None or entry.unit is None:
            raise KeyError(kind)
        return entry.unit

    def __iter__(self):
        return iter([name for name, entry in _TYPES.items() if entry.unit is not None])

    def __len__(self) -> int:
        return sum(1 for entry in _TYPES.values() if entry.unit is not None)

    def __repr__(self) -> str:
        return f"UNIT_OBJECTIVES({dict(self)!r})"


# What the front ends read: a unit objective registered with a description and `unit` appears
# in the CLI's --objective and the dashboard's pickers.
UNIT_OBJECTIVES: Mapping[str, UnitObjective] = _UnitObjectives()


def unit_objective(kind: str, layer: str, unit: Units, tokens: str | int = "patch") -> Objective:
    if kind not in UNIT_OBJECTIVES:
        raise ObjectiveError(f"unknown objective {kind!r}: use one of {', '.join(UNIT_OBJECTIVES)}")
    return UNIT_OBJECTIVES[kind].build(layer, unit, tokens)


def _from_json_units(unit) -> Units:
    return unit if isinstance(unit, int) else tuple(unit)


def from_spec(spec: dict) -> Objective:
    """Rebuild an objective from `Objective.spec()` (as stored in a result's JSON)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ObjectiveError(f"not an objective spec: {spec!r} (missing 'type')")
    entry = _TYPES.get(spec["type"]) if isinstance(spec["type"], str) else None
    if entry is None:
        raise ObjectiveError(
            f"unknown objective type {spec['type']!r} in {spec!r}: the registered types are "
            f"{', '.join(_TYPES)}. An objective class of your own is registered with "
            f"@vitviz.rendering.objectives.register(\"{spec['type']}\") in this process "
            "before a spec of it is read.")
    try:
        return entry.build(spec)
    except KeyError as error:
        raise ObjectiveError(f"not an objective spec: {spec!r} (missing {error})") from error


def _spec_json(spec) -> str:
    try:
        return json.dumps(spec, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ObjectiveError(f"an objective's spec holds JSON values only (numbers, strings, "
                             f"lists, dicts): {spec!r} ({error})") from error


def normal_spec(spec: dict) -> dict:
    """The spec as results store it and cache keys hash it: rebuilt through the registry, which
    normalises it and rejects a bad one early."""
    normal = from_spec(spec).spec()
    _spec_json(normal)
    return normal


def checked_spec(objective: Objective) -> dict:
    """`objective.spec()`, once it is known to rebuild `objective`: a run and its cache entry
    are found by the spec, so a spec that rebuilt something else would serve the wrong result."""
    spec = objective.spec()
    spec_json = _spec_json(spec)
    rebuilt = from_spec(spec)
    # A built-in made with lists (Neuron(layer, [1, 2])) rebuilds with tuples: its spec is the same.
    if type(rebuilt) is not type(objective) or not (
            _equal(rebuilt, objective)
            or (_builtin(objective) and _spec_json(rebuilt.spec()) == spec_json)):
        raise ObjectiveError(
            f"{type(objective).__qualname__}.spec() gives {spec!r}, which rebuilds {rebuilt!r}: "
            "a spec names its registered type and every field that sets the objective's value")
    return spec


def _equal(a: Objective, b: Objective) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. a tensor field that a spec holds as a list
        return False


def _builtin(objective: Objective) -> bool:
    if type(objective) is Sum:
        return all(_builtin(term) for term in objective.terms)
    if type(objective) is Scaled:
        return _builtin(objective.inner)
    return type(objective).__module__ == __name__


# The built-ins, in the order the front ends list the unit objectives. Their specs (and so the
# cache keys of their runs) are what they were before the registry.
register("neuron", build=lambda s: neuron(s["layer"], _from_json_units(s["unit"]),
                                          s.get("tokens", "patch")),
         description="neuron: one unit, averaged over tokens (ViT) or at the centre (CNN)",
         unit=lambda layer, unit, tokens: neuron(layer, unit, tokens))(Neuron)
register("channel", build=lambda s: channel(s["layer"], _from_json_units(s["unit"])),
         description="channel: one unit, averaged over all patches / positions",
         unit=lambda layer, unit, tokens: channel(layer, unit))(Channel)
register("seed_compat", build=lambda s: seed_compat(s["layer"], _from_json_units(s["unit"])),
         description="blog post's activation[:, n]: on a ViT this selects token n",
         unit=lambda layer, unit, tokens: seed_compat(layer, unit))(SeedCompat)
register("logit", build=lambda s: logit(s["layer"], _from_json_units(s["unit"])),
         description="logit: one class score of the classifier head",
         unit=lambda layer, unit, tokens: logit(layer, unit))(Logit)
register("direction",
         build=lambda s: direction(s["layer"], s["vector"], s.get("tokens", "patch")))(Direction)
register("diversity", build=lambda s: Diversity(s["layer"]))(Diversity)
register("sum", build=lambda s: Sum(tuple(from_spec(t) for t in s["terms"])))(Sum)
register("scaled", build=lambda s: Scaled(from_spec(s["inner"]), float(s["weight"])))(Scaled)
