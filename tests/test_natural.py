"""The natural-statistics prior: pictures whose early features and colours stay near photos'."""
import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.rendering import natural
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import get_preset

from conftest import VIT_HIDDEN


def test_the_prior_keeps_pictures_nearer_photos_and_the_units_still_rise(tiny_vit):
    units, seeds = tuple(range(0, 64, 8)), [0] * 8
    stats = natural.photo_statistics(tiny_vit)
    assert stats["layer"] == "encoder.layers.encoder_layer_0"
    found = {}
    for weight in (0.0, 1.0):
        preset = resolve_preset("robust", natural_stats=weight, precision="fp32")
        records = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, units), seeds, preset, steps=40,
                                record_every=0))
        images = records[-1].images
        with torch.no_grad():
            act = activations(tiny_vit, tiny_vit.to_input(images), [stats["layer"]])
        off = natural.penalty(act[stats["layer"]], tiny_vit.prefix_tokens, stats)
        rise = torch.tensor(records[-1].activation) > torch.tensor(records[0].activation)
        found[weight] = off + natural.saturation_excess(images, stats), rise
    nearer = found[1.0][0] < found[0.0][0]
    assert nearer.float().mean() >= 7 / 8, found
    assert found[1.0][1].float().mean() >= 7 / 8, "the prior may slow a unit, not stop it"


def test_saturation_counts_only_what_lies_above_the_photos():
    grey = torch.full((1, 3, 8, 8), 0.5)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    stats = {"saturation": 0.2}
    assert natural.saturation(red).item() == 1.0
    assert natural.saturation_excess(grey, stats).item() == 0.0
    assert natural.saturation_excess(red, stats).item() == pytest.approx(0.8)


def test_the_knob_is_checked_and_left_out_of_keys_when_off():
    assert "natural_stats" not in get_preset("robust").knobs()
    assert resolve_preset("robust", natural_stats=0.5).knobs()["natural_stats"] == 0.5
    with pytest.raises(UserError, match="natural_stats"):
        resolve_preset("robust", natural_stats=-1.0).check()
