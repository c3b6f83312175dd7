"""The unit's share of its layer: a maximised unit is driven against its layer's excitation."""
import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.rendering import objectives as O
from vitviz.rendering import unit_share
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import PRESETS, from_knobs
from vitviz.store.runs import RunRequest

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def test_excitation_is_the_layers_positive_part_where_the_unit_is_read():
    act = torch.randn(3, 5, 8)
    on = act.clamp(min=0)
    patch = unit_share.excitation(O.Neuron("l", 2), act, prefix=1)
    assert torch.allclose(patch, on[:, 1:].mean(dim=(1, 2)))
    cls = unit_share.excitation(O.Neuron("l", 2, tokens="cls"), act, prefix=1)
    assert torch.allclose(cls, on[:, 0].mean(dim=1))
    assert torch.allclose(unit_share.excitation(O.Channel("l", 2), act, prefix=1), patch)
    maps = torch.randn(2, 4, 5, 5)
    centre = unit_share.excitation(O.Neuron("l", 1), maps, prefix=0)
    assert torch.allclose(centre, maps[:, :, 2, 2].clamp(min=0).mean(dim=1))
    whole = unit_share.excitation(O.Channel("l", 1), maps, prefix=0)
    assert torch.allclose(whole, maps.clamp(min=0).mean(dim=(1, 2, 3)))


def test_the_share_term_weighs_the_layer_by_the_units_own_value_and_spares_a_unit_below_zero():
    values = torch.tensor([2.0, -1.0], requires_grad=True)
    excited = torch.tensor([0.5, 0.5], requires_grad=True)
    unit_share.shared(values, excited, 1.0).sum().backward()
    # d/dm of u - sg(u+) log m is -u / m: at weight 1, u * grad log(u / m).
    assert torch.allclose(excited.grad, torch.tensor([-4.0, 0.0]))
    assert torch.allclose(values.grad, torch.ones(2))
    # A blank layer does not make the logarithm infinite.
    assert torch.isfinite(unit_share.shared(torch.ones(1), torch.zeros(1), 1.0)).all()


def test_pictures_driven_by_their_share_take_more_of_their_layer_and_still_rise(tiny_vit):
    # A rate over 16 units of the untrained test ViT: at the end, each unit's value over its
    # layer's excitation, on the un-augmented picture, with and without the share term.
    units = tuple(range(0, 64, 4))
    found = {}
    for weight in (0.0, 1.0):
        # Measured on the default without its photo prior, as docs/quality.md's sweep was.
        preset = resolve_preset("robust", **NO_PHOTO_PRIOR, precision="fp32", unit_share=weight)
        records = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, units), [0] * len(units),
                                preset, steps=40, record_every=0))
        with torch.no_grad():
            act = activations(tiny_vit, tiny_vit.to_input(records[-1].images),
                              [VIT_HIDDEN])[VIT_HIDDEN]
        excited = unit_share.excitation(O.neuron(VIT_HIDDEN, units), act,
                                        tiny_vit.prefix_tokens)
        reached = torch.tensor(records[-1].activation)
        found[weight] = reached / excited, reached, torch.tensor(records[0].activation)
    assert (found[1.0][0] > found[0.0][0]).float().mean() >= 0.75, found
    assert (found[1.0][1] > found[1.0][2]).float().mean() >= 0.9, found


def test_the_share_is_keyed_only_where_it_holds():
    robust = PRESETS["robust"]
    assert "unit_share" not in robust.knobs()
    on = robust.with_overrides(unit_share=1)
    assert on.knobs()["unit_share"] == 1.0
    assert from_knobs({**on.knobs(), "name": "robust"}) == on
    with pytest.raises(UserError, match="unit_share is a weight from 0 to 100"):
        robust.with_overrides(unit_share=-1.0).check()
    unit = {"type": "neuron", "layer": VIT_HIDDEN, "unit": 3, "tokens": "patch"}
    direction = {"type": "direction", "layer": VIT_HIDDEN, "vector": [1.0] * 64,
                 "tokens": "patch"}

    def key(objective, minimise=False, **knobs):
        return RunRequest("tiny_vit", objective, (0,), "robust", knobs, minimise=minimise).key()

    assert key(unit, unit_share=1.0) != key(unit)
    # A minimised picture and an objective other than a unit's run without it.
    assert key(unit, True, unit_share=1.0) == key(unit, True)
    assert key(direction, unit_share=1.0) == key(direction)


def test_a_minimised_picture_is_the_same_with_or_without_the_share(tiny_vit):
    def final(**knobs):
        preset = resolve_preset("robust", precision="fp32", **knobs)
        return list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 5), [0], preset, steps=3,
                             record_every=0, minimise=True))[-1].images

    assert torch.equal(final(unit_share=1.0), final())
