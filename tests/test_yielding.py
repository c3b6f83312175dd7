"""Priors that yield to the objective: they shape a picture only in ways that cost no drive."""
import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.rendering import exemplar_stats, natural, yielding
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import PRESETS, from_knobs

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def gradients(drive_direction, prior_direction):
    """The yielded gradient of a 2-item parameter for linear losses along the given rows."""
    x = torch.nn.Parameter(torch.zeros(2, 3))
    yielding.backward((x * drive_direction).sum(dim=1), (x * prior_direction).sum(dim=1), [x])
    return x.grad


def test_a_prior_against_the_drive_gives_way_and_one_along_it_adds_in_full():
    drive = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    prior = torch.tensor([[-4.0, 3.0, 0.0], [0.3, 0.0, 0.4]])
    grad = gradients(drive, prior)
    pull = grad - drive
    # Item 0's prior points against its drive: only its sideways part is left, scaled to the
    # drive's size; item 1's agrees and is smaller than its drive: kept as it is.
    assert torch.allclose(pull[0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(pull[1], prior[1])
    # Each item is its own: item 0 is unchanged whatever item 1's losses are.
    assert torch.allclose(gradients(drive, torch.stack([prior[0], -prior[1]]))[0], grad[0])
    # Without drive, no pull.
    assert gradients(torch.zeros(2, 3), prior).abs().sum() == 0


def test_yielding_keeps_the_drive_a_prior_took_and_still_holds_pictures_to_the_photos(
        tiny_vit):
    # On this untrained ViT the smooth first picture drives many units past anything its
    # photos reach, so a prior toward those photos' statistics lowers them; yielding, it
    # shapes what costs no drive. A rate over 16 units.
    units = tuple(range(0, 64, 4))
    layer = natural.first_block(tiny_vit)
    views = exemplar_stats.unit_views(tiny_vit, O.neuron(VIT_HIDDEN, units), len(units), False)
    reference = exemplar_stats.reference(tiny_vit, layer, views)
    spread = natural.photo_statistics(tiny_vit, layer)["spread"]
    found = {}
    # "yielding" is the default.
    for name, knobs in {"none": NO_PHOTO_PRIOR, "prior": {"priors_yield": False},
                        "yielding": {}}.items():
        preset = resolve_preset("robust", precision="fp32", **knobs)
        records = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, units), [0] * len(units), preset,
                                steps=60, record_every=0))
        with torch.no_grad():
            act = activations(tiny_vit, tiny_vit.to_input(records[-1].images), [layer])[layer]
        unlike = exemplar_stats.distance(act, reference, 1, spread, tiny_vit.prefix_tokens)
        found[name] = unlike, torch.tensor(records[-1].activation)
    assert (found["yielding"][1] > found["prior"][1]).float().mean() >= 0.75, found
    assert (found["yielding"][0] < found["none"][0]).float().mean() >= 0.75, found


def test_yielding_is_keyed_only_when_on_and_refuses_a_non_boolean():
    robust = PRESETS["robust"]
    assert robust.knobs()["priors_yield"] is True and robust.exemplar_stats
    off = robust.with_overrides(priors_yield=False)
    assert "priors_yield" not in off.knobs()
    for preset in (robust, off):
        assert from_knobs({**preset.knobs(), "name": "robust"}) == preset
    with pytest.raises(UserError, match="priors_yield is true or false"):
        robust.with_overrides(priors_yield=1).check()
