import pytest
import torch

from vitviz import objectives as O
from vitviz.layers import LayerInfo

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
