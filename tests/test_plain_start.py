"""The plain start: a unit's picture starts at the colour of the reference view whose flat field
drives it most (vitviz.rendering.plain_start)."""
import pytest
import torch

from vitviz.data.photo_sets import examples_for
from vitviz.errors import UserError
from vitviz.rendering import exemplar_stats, plain_start
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.params import FourierImage
from vitviz.rendering.presets import get_preset
from vitviz.rendering.step import ForwardStep

from conftest import VIT_HIDDEN


def test_a_fourier_image_moved_to_a_colour_shows_it_and_keeps_its_noise():
    image = FourierImage([0, 1], 32, decay=1.5, floor=2)
    grey = image().detach()
    image.start_at(torch.tensor([[0.9, 0.2, 0.1], [1.0, 1.0, 1.0]]))
    shown = image().detach()
    assert shown[0].mean(dim=(1, 2)).tolist() == pytest.approx([0.9, 0.2, 0.1], abs=0.01)
    # Pure white is held inside the sigmoid's reach, where a picture can still leave it.
    assert shown[1].mean(dim=(1, 2)).tolist() == pytest.approx([0.98] * 3, abs=0.005)
    # Its own noise: what the seed drew around the mean (before the sigmoid) is what it was
    # around grey.
    def around_mean(images):
        logits = torch.logit(images[0])
        return logits - logits.mean(dim=(1, 2), keepdim=True)

    assert around_mean(grey).abs().max() > 1e-3
    assert torch.allclose(around_mean(shown), around_mean(grey), atol=1e-4)
    assert not torch.equal(shown[0], shown[1])


def test_the_start_colour_is_the_view_colour_that_drives_the_unit_most(tiny_vit):
    units = (3, 5, 7)
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    size = tiny_vit.preprocessing.size
    # Items with different numbers of views, as RunRequest.statistics_views allows.
    views = exemplar_stats.reference_views(examples, units, [(0, 1, 2), (0,), (1, 4, 5)],
                                           False, size)
    target = O.neuron(VIT_HIDDEN, units)
    passes = ForwardStep.for_run(tiny_vit, target, resolve_preset("robust", precision="fp32"))
    for minimise in (False, True):
        chosen = plain_start.start_colours(target, passes.clean, views, minimise)
        for item, (unit, item_views) in enumerate(zip(units, views)):
            colours = item_views.mean(dim=(2, 3))
            fields = colours[:, :, None, None].expand(-1, 3, size, size)
            values = O.neuron(VIT_HIDDEN, unit)(passes.clean(fields), len(fields))
            best = values.argmin() if minimise else values.argmax()
            assert chosen[item].tolist() == pytest.approx(colours[best].tolist(), abs=1e-6)


def test_a_plain_start_begins_at_one_of_its_reference_colours(tiny_vit):
    units = (3, 5)
    objective = O.neuron(VIT_HIDDEN, units)
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    views = exemplar_stats.reference_views(examples, units, [(0, 1, 2)] * 2, False,
                                           tiny_vit.preprocessing.size)
    starts = {}
    for plain in (False, True):
        preset = resolve_preset("robust", plain_start=plain, precision="fp32")
        records = list(optimise(tiny_vit, objective, [0, 0], preset, steps=8, record_every=8,
                                held_to=views))
        starts[plain] = records[0].images.mean(dim=(2, 3))
    assert (starts[False] - 0.5).abs().max() < 0.02  # grey
    for item, item_views in enumerate(views):
        colours = item_views.mean(dim=(2, 3)).clamp(0.02, 0.98)
        assert (colours - starts[True][item]).abs().max(dim=1).values.min() < 0.02


def test_the_plain_start_is_off_by_default_and_needs_a_fourier_image():
    assert "plain_start" not in get_preset("robust").knobs()  # earlier results keep their keys
    assert get_preset("robust").with_overrides(plain_start=True).knobs()["plain_start"] is True
    with pytest.raises(UserError, match="plain_start sets a Fourier image"):
        get_preset("naive").with_overrides(plain_start=True).check()
    # Only a picture of one unit from noise starts at a colour of its photos.
    preset = get_preset("robust").with_overrides(plain_start=True)
    assert not preset.scoped(one_unit=False, from_photo=False).plain_start
    assert not preset.scoped(one_unit=True, from_photo=True).plain_start
    assert preset.scoped(one_unit=True, from_photo=False).plain_start
