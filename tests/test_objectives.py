from dataclasses import dataclass

import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.layers import LayerInfo
from vitviz.rendering import objectives as O

LAYER = "encoder.layers.encoder_layer_0.mlp.1"


def tokens_acts(rows=2, tokens=5, dim=4):
    return {LAYER: torch.arange(rows * tokens * dim, dtype=torch.float).reshape(rows, tokens, dim)}


def lookup_tokens(name, tokens=5, dim=4):
    return LayerInfo(name, "GELU", (tokens, dim), "tokens", "mlp_hidden", 1)


def test_neuron_indexes_the_feature_axis_and_reduces_tokens():
    acts = tokens_acts()
    a = acts[LAYER]
    assert torch.equal(O.neuron(LAYER, 2)(acts, 2), a[:, 1:, 2].mean(dim=1))
    assert torch.equal(O.neuron(LAYER, 2, "cls")(acts, 2), a[:, 0, 2])
    assert torch.equal(O.neuron(LAYER, 2, "all")(acts, 2), a[:, :, 2].mean(dim=1))
    assert torch.equal(O.neuron(LAYER, 2, 3)(acts, 2), a[:, 3, 2])


def test_seed_compat_selects_a_token_not_a_neuron():
    acts = tokens_acts()
    a = acts[LAYER]
    seed = O.seed_compat(LAYER, 2)(acts, 2)
    assert torch.equal(seed, a[:, 2].mean(dim=1))  # the blog's activation[:, 2]
    assert not torch.equal(seed, O.neuron(LAYER, 2)(acts, 2))


def test_maps_channel_is_spatial_mean_and_neuron_is_centre():
    act = torch.randn(3, 6, 5, 5)
    acts = {"conv": act}
    assert torch.allclose(O.channel("conv", 4)(acts, 3), act[:, 4].mean(dim=(1, 2)))
    assert torch.equal(O.neuron("conv", 4)(acts, 3), act[:, 4, 2, 2])


def test_channel_on_tokens_drops_the_class_token():
    acts = tokens_acts()
    assert torch.equal(O.channel(LAYER, 1)(acts, 2), acts[LAYER][:, 1:, 1].mean(dim=1))


def test_one_unit_per_item_across_ensemble_rows():
    acts = tokens_acts(rows=4)  # 2 items x 2 augmented copies
    a = acts[LAYER]
    values = O.neuron(LAYER, (1, 3))(acts, 2)
    expected = torch.stack([a[0, 1:, 1].mean(), a[1, 1:, 1].mean(), a[2, 1:, 3].mean(), a[3, 1:, 3].mean()])
    assert torch.equal(values, expected)


def test_direction_is_projection_on_unit_vector():
    acts = tokens_acts()
    vector = torch.tensor([1.0, 0.0, 2.0, 0.0])
    expected = (acts[LAYER] @ (vector / vector.norm()))[:, 1:].mean(dim=1)
    assert torch.allclose(O.direction(LAYER, vector)(acts, 2), expected)


def test_diversity_penalises_identical_items_only():
    same = {"conv": torch.ones(2, 3, 4, 4)}
    assert torch.allclose(O.diversity("conv")(same, 2), torch.tensor([-1.0, -1.0]))
    different = torch.zeros(2, 2, 1, 1)
    different[0, 0] = 1
    different[1, 1] = 1
    assert torch.allclose(O.diversity("conv")({"conv": different}, 2), torch.zeros(2))
    assert torch.equal(O.diversity("conv")(same, 1), torch.zeros(2))


def test_sums_and_scalar_multiples_compose():
    acts = tokens_acts()
    a, b = O.neuron(LAYER, 0), O.neuron(LAYER, 1, "cls")
    assert torch.allclose((2 * a + b)(acts, 2), 2 * a(acts, 2) + b(acts, 2))
    assert torch.allclose((a - b)(acts, 2), a(acts, 2) - b(acts, 2))
    combined = a + O.diversity(LAYER, 0.5)
    assert combined.target == a


@pytest.mark.parametrize("objective", [
    O.neuron(LAYER, 3, "cls"), O.neuron(LAYER, (1, 2)), O.channel(LAYER, 1),
    O.direction(LAYER, [1, 2, 3, 4]), O.logit("heads.head", 7), O.seed_compat(LAYER, 4),
    2.0 * O.neuron(LAYER, 1) + O.diversity(LAYER, 0.1),
])
def test_spec_round_trip(objective):
    assert O.from_spec(objective.spec()) == objective


def test_out_of_range_unit_names_the_valid_range():
    with pytest.raises(O.UnitOutOfRange, match="0 to 3"):
        O.neuron(LAYER, 4).validate(lookup_tokens)
    with pytest.raises(O.UnitOutOfRange, match="0 to 4"):
        O.seed_compat(LAYER, 5).validate(lookup_tokens)
    with pytest.raises(O.UnitOutOfRange, match="token 7"):
        O.neuron(LAYER, 1, 7).validate(lookup_tokens)
    with pytest.raises(O.ObjectiveError, match="token mode"):
        O.neuron(LAYER, 1, "mean").validate(lookup_tokens)
    with pytest.raises(O.ObjectiveError, match="3 values"):
        O.direction(LAYER, [1, 2, 3]).validate(lookup_tokens)


def test_a_neuron_on_a_vector_layer_reads_its_unit_per_row():
    acts = {"head": torch.arange(12.0).view(3, 4)}
    assert torch.equal(O.neuron("head", 2)(acts, 3), torch.tensor([2.0, 6.0, 10.0]))


@pytest.mark.parametrize("objective", [
    O.neuron(LAYER, 2), O.neuron(LAYER, 2, "cls"), O.channel(LAYER, 1), O.seed_compat(LAYER, 3),
    O.direction(LAYER, [1.0, -2.0, 0.5, 0.0]), O.diversity(LAYER), O.logit(LAYER, 1),
])
def test_bf16_activations_give_fp32_values_equal_to_casting_first(objective):
    # Objectives cast what they read after picking it (the loop no longer casts whole layers).
    acts = {LAYER: torch.randn(4, 5, 4).bfloat16()}
    value = objective(acts, 2)
    assert value.dtype == torch.float32
    assert torch.equal(value, objective({LAYER: acts[LAYER].float()}, 2))


# --- The registry: one home for objectives, the built-ins' and a user's own -----------------

HIDDEN = "encoder.layers.encoder_layer_1.mlp.1"  # conftest.VIT_HIDDEN of the tiny ViT

# Specs (canonical JSON) and the hash of the objective entry of a run's config, computed with
# the code before the registry: the part of every cache key an objective sets.
PINNED = {
    "neuron": (O.neuron(HIDDEN, 3),
               '{"layer":"encoder.layers.encoder_layer_1.mlp.1","tokens":"patch","type":"neuron","unit":3}',
               "cc73acd3c262115471733fd0169da72bc049f99deb0cdc12a5c1fcb43e003ab1"),
    "neuron_units_cls": (
        O.neuron(HIDDEN, (1, 2), "cls"),
        '{"layer":"encoder.layers.encoder_layer_1.mlp.1","tokens":"cls","type":"neuron","unit":[1,2]}',
        "b39235e85c27dc4360ca08c94cedffcd128adeecdf8c216ac8a81e40bee8452e"),
    "channel": (O.channel(HIDDEN, 7),
                '{"layer":"encoder.layers.encoder_layer_1.mlp.1","type":"channel","unit":7}',
                "77fa652935275f163a664794bacee2ce486dc03b64ab6c441497de00727391c5"),
    "direction": (
        O.direction(HIDDEN, [1, 2, 0.5, -3]),
        '{"layer":"encoder.layers.encoder_layer_1.mlp.1","tokens":"patch","type":"direction",'
        '"vector":[1.0,2.0,0.5,-3.0]}',
        "6ce9ee86eb0441256cb3bfea90d445be8194aa83f0e80bfc9f5fb985cb790bdb"),
    "logit": (O.logit("heads.head", (7, 9)), '{"layer":"heads.head","type":"logit","unit":[7,9]}',
              "785161a816228756086630aee6bb04270247bc62c5afb43b5162f607e3c329d6"),
    "seed_compat": (O.unit_objective("seed_compat", HIDDEN, 3, "cls"),
                    '{"layer":"encoder.layers.encoder_layer_1.mlp.1","type":"seed_compat","unit":3}',
                    "73a7a2bc0f60ae755b1520f07b0e9e476a2b40ee4fb67ab36747c644497faade"),
    "sum_scaled_diversity": (
        2.0 * O.neuron(HIDDEN, 1) + O.diversity(HIDDEN, 0.1),
        '{"terms":[{"inner":{"layer":"encoder.layers.encoder_layer_1.mlp.1","tokens":"patch",'
        '"type":"neuron","unit":1},"type":"scaled","weight":2.0},{"inner":{"layer":'
        '"encoder.layers.encoder_layer_1.mlp.1","type":"diversity"},"type":"scaled","weight":0.1}],'
        '"type":"sum"}',
        "90bdb527345043cfde6d3c1ac5963cb01ebd41487375651e442a08aff6ea3547"),
    "difference": (
        O.channel(HIDDEN, 1) - O.logit("heads.head", 2),
        '{"terms":[{"layer":"encoder.layers.encoder_layer_1.mlp.1","type":"channel","unit":1},'
        '{"inner":{"layer":"heads.head","type":"logit","unit":2},"type":"scaled","weight":-1.0}],'
        '"type":"sum"}',
        "6c495af89b382914c9547ca8bfe81b91fc1bcfdaa4eab9e18e3e9fc486bd11c1"),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_builtin_specs_and_their_cache_key_part_are_unchanged(name):
    from vitviz.common.hashing import canonical_json, config_key
    from vitviz.store.runs import RunRequest

    objective, spec_json, objective_key = PINNED[name]
    assert canonical_json(objective.spec()) == spec_json
    assert canonical_json(O.checked_spec(objective)) == spec_json  # what visualise() stores
    config = RunRequest("tiny_vit", objective.spec(), (0, 1), "robust", {"steps": 6}).config()
    assert canonical_json(config["objective"]) == spec_json
    assert config_key(config["objective"]) == objective_key


def test_stored_builtin_specs_rebuild_to_the_same_normal_spec():
    # Specs as read back from a result's JSON: lists, an int weight, a left-out token mode.
    from vitviz.common.hashing import canonical_json

    stored = {"type": "scaled", "weight": 2,
              "inner": {"type": "neuron", "layer": HIDDEN, "unit": [1, 2]}}
    assert canonical_json(O.normal_spec(stored)) == (
        '{"inner":{"layer":"encoder.layers.encoder_layer_1.mlp.1","tokens":"patch","type":"neuron",'
        '"unit":[1,2]},"type":"scaled","weight":2.0}')


BUILTIN_EXAMPLES = {
    "neuron": O.neuron(HIDDEN, (1, 2), 3), "channel": O.channel(HIDDEN, 1),
    "seed_compat": O.seed_compat(HIDDEN, 4), "logit": O.logit("heads.head", 7),
    "direction": O.direction(HIDDEN, [1.0, -2.0]), "diversity": O.diversity(HIDDEN),
    "sum": O.neuron(HIDDEN, 1) + O.channel(HIDDEN, 2), "scaled": 0.5 * O.channel(HIDDEN, 2),
}


def test_the_registry_holds_every_builtin_and_each_round_trips():
    assert list(O.OBJECTIVE_TYPES) == list(BUILTIN_EXAMPLES)
    for name, objective in BUILTIN_EXAMPLES.items():
        spec = objective.spec()
        assert spec["type"] == name and isinstance(objective, O.OBJECTIVE_TYPES[name].cls)
        rebuilt = O.from_spec(spec)
        assert rebuilt == objective and rebuilt.spec() == spec


def test_unit_objectives_and_the_dashboards_kinds_come_from_the_registry():
    from ui.settings import KINDS
    from vitviz.cli import parser

    registered = {name: entry.unit.description for name, entry in O.OBJECTIVE_TYPES.items()
                  if entry.unit is not None}
    assert list(registered) == ["neuron", "channel", "seed_compat", "logit"]
    assert dict(O.UNIT_OBJECTIVES.items()) == {name: O.OBJECTIVE_TYPES[name].unit for name in registered}
    assert KINDS == registered
    run = next(a for a in parser()._subparsers._group_actions[0].choices["run"]._actions
               if a.dest == "objective")
    assert list(run.choices) == list(registered)


@pytest.fixture
def registry():
    """The registry as it was before the test: user types registered in a test go away after."""
    saved = dict(O._TYPES)
    yield O
    O._TYPES.clear()
    O._TYPES.update(saved)


@dataclass(frozen=True)
class Energy(O.Objective):
    """A user's objective: mean square of some units over the patch tokens."""

    layer: str
    units: tuple[int, ...]
    scale: float = 1.0

    @property
    def layers(self):
        return (self.layer,)

    def __call__(self, acts, n_items):
        act = acts[self.layer][:, 1:, list(self.units)].float()
        return self.scale * act.pow(2).mean(dim=(1, 2))

    def validate(self, lookup):
        lookup(self.layer)

    def spec(self):
        return {"type": "energy", "layer": self.layer, "units": list(self.units), "scale": self.scale}


def test_a_users_objective_rebuilds_from_its_registered_type(registry):
    with pytest.raises(UserError, match="unknown objective type 'energy'.*neuron, channel.*register"):
        O.from_spec(Energy(HIDDEN, (1, 2)).spec())
    assert O.register("energy")(Energy) is Energy
    objective = Energy(HIDDEN, (1, 2), 0.5)
    assert O.from_spec(objective.spec()) == objective and O.checked_spec(objective) == objective.spec()
    assert "energy" in O.OBJECTIVE_TYPES and "energy" not in O.UNIT_OBJECTIVES
    with pytest.raises(UserError, match="cannot rebuild Energy"):
        O.from_spec({"type": "energy", "layer": HIDDEN, "unit": 3})
    # It composes like a built-in, and the sum rebuilds through the registry too.
    combined = O.neuron(HIDDEN, 1) + 2 * objective
    assert O.from_spec(combined.spec()) == combined


def test_a_taken_name_and_a_malformed_class_are_refused(registry):
    with pytest.raises(UserError, match="'neuron' is taken by .*Neuron \\(a built-in\\)"):
        O.register("neuron")(Energy)
    O.register("energy")(Energy)

    @dataclass(frozen=True)
    class Other(Energy):
        pass

    with pytest.raises(UserError, match="'energy' is taken by .*Energy \\(another class\\)"):
        O.register("energy")(Other)
    O.register("energy")(Energy)  # the same class again (a notebook cell run twice) is fine

    @dataclass
    class Mutable(O.Objective):
        layer: str

        def spec(self):
            return {"type": "mutable", "layer": self.layer}

    @dataclass(frozen=True)
    class NoSpec(O.Objective):
        layer: str

    with pytest.raises(UserError, match="frozen"):
        O.register("mutable")(Mutable)
    with pytest.raises(UserError, match="spec\\(\\)"):
        O.register("no_spec")(NoSpec)
    with pytest.raises(UserError, match="description"):
        O.register("unit_energy", unit=lambda layer, unit, tokens: Energy(layer, (unit,)))(Other)
    assert list(O.OBJECTIVE_TYPES) == [*BUILTIN_EXAMPLES, "energy"]


def test_a_registered_unit_objective_joins_the_unit_objectives(registry):
    O.register("energy", description="energy: the square of one unit",
               unit=lambda layer, unit, tokens: Energy(layer, (unit,)))(Energy)
    assert list(O.UNIT_OBJECTIVES)[-1] == "energy"
    assert O.unit_objective("energy", HIDDEN, 5) == Energy(HIDDEN, (5,))


def test_a_spec_that_does_not_rebuild_its_objective_is_refused(registry):
    @dataclass(frozen=True)
    class Forgetful(Energy):
        def spec(self):  # leaves out scale: two different objectives would share a cache entry
            return {"type": "forgetful", "layer": self.layer, "units": list(self.units)}

    @dataclass(frozen=True)
    class Tensorful(Energy):
        def spec(self):
            return {"type": "tensorful", "layer": self.layer, "units": torch.tensor(self.units)}

    O.register("forgetful")(Forgetful)
    O.register("tensorful")(Tensorful)
    with pytest.raises(UserError, match="rebuilds"):
        O.checked_spec(Forgetful(HIDDEN, (1,), 3.0))
    with pytest.raises(UserError, match="JSON"):
        O.checked_spec(Tensorful(HIDDEN, (1,)))
    with pytest.raises(UserError, match="rebuilds"):  # inside a sum too
        O.checked_spec(O.neuron(HIDDEN, 1) + Forgetful(HIDDEN, (1,), 3.0))
    # A built-in made with a list (not through neuron()) still passes: its spec is the same.
    assert O.checked_spec(O.Neuron(HIDDEN, [1, 2])) == O.Neuron(HIDDEN, [1, 2]).spec()


def test_visualise_runs_a_users_objective_once_then_serves_it_from_the_cache(
        registry, tiny_vit, tmp_path, monkeypatch):
    from vitviz.api import visualise
    from vitviz.store import runs
    from vitviz.store.cache import ResultCache

    O.register("energy")(Energy)
    loops = []
    real_optimise = runs.optimise
    monkeypatch.setattr(runs, "optimise", lambda *a, **k: loops.append(a[1]) or real_optimise(*a, **k))
    cache = ResultCache(tmp_path)
    objective = Energy(HIDDEN, (3, 5))
    first = visualise(tiny_vit, objective=objective, seeds=[0, 1], preset="naive", steps=3,
                      cache=cache)
    assert loops == [objective] and first.config["objective"] == objective.spec()
    assert first.activation[0][-1] > first.activation[0][0]
    second = visualise(tiny_vit, objective=Energy(HIDDEN, (3, 5)), seeds=[0, 1], preset="naive",
                       steps=3, cache=cache)
    assert loops == [objective]  # served from the cache: the loop did not run again
    assert all((a == b).all() for a, b in zip(first.images, second.images))
    assert len(cache.summaries()) == 1
    visualise(tiny_vit, objective=Energy(HIDDEN, (3, 5), 2.0), seeds=[0, 1], preset="naive",
              steps=3, cache=cache)
    assert len(loops) == 2 and len(cache.summaries()) == 2  # another field, another entry
