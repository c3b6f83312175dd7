import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.models.layers import layer_table
from vitviz.models.resolution import _resized_table, at_input_size, coarse_size
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise
from vitviz.rendering.presets import from_knobs, get_preset

from conftest import VIT_HIDDEN, running_network, step_passes


def test_a_vit_runs_on_a_quarter_of_the_patches_and_is_put_back_after(tiny_vit):
    vit = tiny_vit.module
    table, size = vit.encoder.pos_embedding, vit.image_size
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(RuntimeError), at_input_size(tiny_vit, 16):
        out = activations(tiny_vit, tiny_vit.to_input(images, 16), [VIT_HIDDEN])[VIT_HIDDEN]
        assert out.shape == (2, 1 + 2 * 2, 64)  # class token and a 2x2 patch grid
        raise RuntimeError("leaving the block by an error must restore the model too")
    assert vit.encoder.pos_embedding is table and vit.image_size == size
    full = activations(tiny_vit, tiny_vit.to_input(images), [VIT_HIDDEN])[VIT_HIDDEN]
    assert full.shape == (2, 1 + 4 * 4, 64)


def test_the_resized_position_table_keeps_the_class_entry_and_the_grid_layout():
    # A table whose patch entries are their row index: resized to half the grid, rows still
    # increase top to bottom and the class entry is untouched.
    grid = torch.arange(4.0).repeat_interleave(4).view(1, 16, 1)
    table = torch.cat([torch.full((1, 1, 1), -7.0), grid], dim=1)
    assert torch.equal(_resized_table(table, 1, 4), table)
    half = _resized_table(table, 1, 2)[0, :, 0]
    assert half[0] == -7.0 and half.shape == (5,)
    assert half[1] == half[2] < half[3] == half[4]


def test_coarse_size_is_whole_patches(tiny_vit):
    assert coarse_size(tiny_vit, 0.5) == 16
    assert coarse_size(tiny_vit, 0.3) == 8  # 9.6 px: one 8-px patch
    assert coarse_size(tiny_vit, 0.01) == 8


def _input_sides(model, objective, preset, seeds=(0,)):
    """The side of every image the network was fed, in order, during a run."""
    layer_table(model)  # its dry run is not part of the run
    sides = []
    handle = running_network(model, preset).register_forward_pre_hook(
        lambda _m, args: sides.append(args[0].shape[-1]))
    try:
        records = list(optimise(model, objective, list(seeds), preset, record_every=0))
    finally:
        handle.remove()
    return step_passes(sides, preset), records


def test_coarse_steps_feed_the_augmented_copies_small_and_record_at_full_size(tiny_vit):
    preset = get_preset("robust").with_overrides(coarse_steps=0.5, steps=8)
    sides, records = _input_sides(tiny_vit, O.neuron(VIT_HIDDEN, 3), preset)
    # Each step: the augmented copies, then the clean image; then one last clean pass.
    augmented, clean = sides[0:16:2], sides[1:16:2] + sides[16:]
    assert augmented == [16] * 4 + [32] * 4
    assert set(clean) == {32} and len(records) == 9


@pytest.mark.parametrize("objective", [O.neuron(VIT_HIDDEN, 3, tokens=2), O.seed_compat(VIT_HIDDEN, 2)],
                         ids=["token 2", "blog post's activation[:, n]"])
def test_an_objective_on_one_token_position_runs_every_step_at_full_size(tiny_vit, objective):
    assert objective.reads_token_positions
    preset = get_preset("robust").with_overrides(coarse_steps=0.5, steps=4)
    sides, records = _input_sides(tiny_vit, objective, preset)
    plain, _ = _input_sides(tiny_vit, objective, preset.with_overrides(coarse_steps=0.0))
    assert set(sides) == {32} and sides == plain


def test_models_that_take_one_size_only_ignore_coarse_steps(tiny_cnn):
    assert not tiny_cnn.resizable
    preset = get_preset("robust").with_overrides(coarse_steps=0.5, steps=4)
    _, coarse = _input_sides(tiny_cnn, O.channel("1", 2), preset)
    _, plain = _input_sides(tiny_cnn, O.channel("1", 2), preset.with_overrides(coarse_steps=0.0))
    assert coarse[-1].activation == plain[-1].activation


@pytest.mark.parametrize("knobs", [{"coarse_steps": 1.5}, {"coarse_steps": -0.1},
                                   {"coarse_scale": 0.0}, {"coarse_scale": 2.0}])
def test_coarse_knobs_out_of_range_are_named(knobs):
    with pytest.raises(UserError, match=next(iter(knobs))):
        get_preset("robust").with_overrides(**knobs).check()


def test_coarse_knobs_are_part_of_a_results_key_only_when_on():
    # Off, they change nothing: results made before they existed keep their keys, and a stored
    # result's knobs give back the preset it ran with.
    robust = get_preset("robust")
    off = robust.with_overrides(coarse_steps=0.0)
    assert "coarse_steps" not in off.knobs()
    assert off.with_overrides(coarse_scale=0.25).knobs() == off.knobs()
    on = robust.with_overrides(coarse_steps=0.5)
    assert on.knobs()["coarse_steps"] == 0.5
    assert from_knobs({"name": "robust", **on.knobs()}) == on
    assert from_knobs({"name": "robust", **off.knobs()}) == off
