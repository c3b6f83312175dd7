import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.layers import layer_table
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise
from vitviz.rendering.presets import from_knobs, get_preset
from vitviz.rendering.token_dropout import first_block, kept_count, kept_indices

from conftest import VIT_HIDDEN, running_network, step_passes

# tiny_vit: a class token and a 4x4 patch grid.
PATCHES = 16


def _token_counts(model, objective, preset, seeds=(0,)):
    """Tokens entering the first block at every pass of a run, in order, and the records."""
    layer_table(model)  # its dry run is not part of the run
    counts = []
    block = running_network(model, preset).get_submodule(first_block(model))
    # A forward hook sees the tokens the block ran on, after any pre-hook dropped some.
    hook = block.register_forward_hook(lambda _m, args, _out: counts.append(args[0].shape[1]))
    try:
        records = list(optimise(model, objective, list(seeds), preset, record_every=0))
    finally:
        hook.remove()
    return step_passes(counts, preset), records


def test_augmented_copies_enter_the_blocks_with_part_of_their_patches_and_the_record_with_all(
        tiny_vit):
    preset = get_preset("robust").with_overrides(keep_tokens=0.5, steps=3)
    counts, records = _token_counts(tiny_vit, O.neuron(VIT_HIDDEN, 3), preset)
    # Each step: the augmented copies, then the clean image; then one last clean pass.
    augmented, clean = counts[0:6:2], counts[1:6:2] + counts[6:]
    assert augmented == [1 + PATCHES // 2] * 3
    assert clean == [1 + PATCHES] * 4 and len(records) == 4


def test_each_copy_draws_its_own_tokens_from_its_items_stream():
    def streams(*seeds):
        return [torch.Generator().manual_seed(seed) for seed in seeds]
    both = kept_indices(streams(0, 1), copies=3, patches=PATCHES, keep=8, device="cpu")
    assert both.shape == (6, 8)
    assert all(len(set(row.tolist())) == 8 and row.tolist() == sorted(row.tolist()) for row in both)
    assert len({tuple(row.tolist()) for row in both}) == 6  # every copy its own subset
    # Item 1's rows are the same whether or not item 0 runs beside it.
    alone = kept_indices(streams(1), copies=3, patches=PATCHES, keep=8, device="cpu")
    assert torch.equal(both[3:], alone)


def test_a_picture_with_token_dropout_depends_only_on_its_seed(tiny_vit):
    preset = get_preset("robust").with_overrides(keep_tokens=0.5, steps=6)
    together = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 3), [0, 1], preset, record_every=0))
    alone = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 3), [1], preset, record_every=0))
    torch.testing.assert_close(together[-1].images[1], alone[-1].images[0], atol=1e-5, rtol=0)


def test_the_picture_still_climbs_with_half_the_tokens_on_most_units(tiny_vit):
    # A rate over units, as for every preset: the unit's activation on the clean image rises.
    units = list(range(0, 64, 4))
    preset = get_preset("robust").with_overrides(keep_tokens=0.5, steps=24)
    records = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, units), [7] * len(units), preset,
                            record_every=0))
    rose = [end > start for start, end in zip(records[0].activation, records[-1].activation)]
    assert sum(rose) >= 0.9 * len(units)


@pytest.mark.parametrize("objective", [O.neuron(VIT_HIDDEN, 3, tokens=2), O.seed_compat(VIT_HIDDEN, 2)],
                         ids=["token 2", "blog post's activation[:, n]"])
def test_an_objective_on_one_token_position_keeps_every_token(tiny_vit, objective):
    preset = get_preset("robust").with_overrides(keep_tokens=0.5, steps=2)
    counts, _ = _token_counts(tiny_vit, objective, preset)
    assert set(counts) == {1 + PATCHES}


def test_models_without_token_blocks_ignore_it(tiny_cnn):
    assert first_block(tiny_cnn) is None
    preset = get_preset("robust").with_overrides(keep_tokens=0.5, steps=3)
    dropped = list(optimise(tiny_cnn, O.channel("1", 2), [0], preset, record_every=0))
    plain = list(optimise(tiny_cnn, O.channel("1", 2), [0], preset.with_overrides(keep_tokens=1.0),
                          record_every=0))
    assert dropped[-1].activation == plain[-1].activation


def test_kept_count_is_at_least_one_token_and_at_most_all():
    assert kept_count(256, 0.5) == 128
    assert kept_count(16, 0.01) == 1
    assert kept_count(16, 1.0) == 16


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5])
def test_keep_tokens_out_of_range_is_named(keep):
    with pytest.raises(UserError, match="keep_tokens"):
        get_preset("robust").with_overrides(keep_tokens=keep).check()


def test_keep_tokens_is_part_of_a_results_key_only_when_on():
    robust = get_preset("robust")
    assert "keep_tokens" not in robust.with_overrides(keep_tokens=1.0).knobs()
    on = robust.with_overrides(keep_tokens=0.5)
    assert on.knobs()["keep_tokens"] == 0.5
    assert from_knobs({"name": "robust", **on.knobs()}) == on
    assert from_knobs({"name": "robust", **robust.knobs()}) == robust
