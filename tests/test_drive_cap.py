"""The drive cap: the objective stops pushing a picture past a multiple of its unit's photos."""
import pytest
import torch

from vitviz.data.photo_sets import examples_for
from vitviz.errors import UserError
from vitviz.rendering import drive_cap, exemplar_stats, token_focus
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.step import ForwardStep
from vitviz.store.runs import RunRequest

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def test_past_the_cap_a_value_gives_no_gradient_and_below_it_all_of_it():
    values = torch.tensor([0.5, 3.0, -0.2, -4.0], requires_grad=True)
    caps = torch.tensor([1.0, -1.0])  # item 0 (rows 0, 1) up to 1; item 1 down to -1
    drive_cap.capped(values[:2], caps[:1], 2, minimise=False).sum().backward()
    assert values.grad.tolist() == [1.0, 0.0, 0.0, 0.0]
    values.grad = None
    drive_cap.capped(values[2:], caps[1:], 2, minimise=True).sum().backward()
    assert values.grad.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_the_cap_lies_past_the_units_strongest_view_by_the_factor(tiny_vit):
    units = (3, 5, 7)
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    size = tiny_vit.preprocessing.size
    # Items with different numbers of views, as RunRequest.statistics_views allows.
    views = exemplar_stats.reference_views(examples, units, [(0, 1, 2), (0,), (1, 4)], False,
                                           size)
    target = O.neuron(VIT_HIDDEN, units)
    passes = ForwardStep.for_run(tiny_vit, target, resolve_preset("robust", precision="fp32"))
    found = drive_cap.caps(target, passes.clean, views, 2.0, minimise=False)
    for item, (unit, item_views) in enumerate(zip(units, views)):
        values = O.neuron(VIT_HIDDEN, unit)(passes.clean(item_views), len(item_views))
        strongest = values.max()
        assert found[item].item() == pytest.approx((strongest + strongest.abs()).item(), rel=1e-4)
    lowest = drive_cap.caps(target, passes.clean, views, 3.0, minimise=True)
    for item, (unit, item_views) in enumerate(zip(units, views)):
        weakest = O.neuron(VIT_HIDDEN, unit)(passes.clean(item_views), len(item_views)).min()
        assert lowest[item].item() == pytest.approx((weakest - 2 * weakest.abs()).item(),
                                                    rel=1e-4)


def _sixteen_units(tiny_vit):
    """Every fourth unit of the test ViT's hidden layer: each unit's 3 strongest views, the
    objective over all of them, and the clean pass that sets their caps."""
    units = tuple(range(0, 64, 4))
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    views = exemplar_stats.reference_views(examples, units, [range(3)] * len(units), False,
                                           tiny_vit.preprocessing.size)
    objective = O.neuron(VIT_HIDDEN, units)
    passes = ForwardStep.for_run(tiny_vit, objective, resolve_preset("robust", precision="fp32"))
    return units, views, objective, passes


def test_capped_pictures_stop_near_their_photos_and_still_reach_them(tiny_vit):
    units, views, objective, passes = _sixteen_units(tiny_vit)
    caps = drive_cap.caps(objective, passes.clean, views, 1.0, minimise=False)
    final = {}
    for factor in (0.0, 1.0):
        preset = resolve_preset("robust", **NO_PHOTO_PRIOR, drive_cap=factor, precision="fp32")
        records = list(optimise(tiny_vit, objective, [0] * len(units), preset, steps=60,
                                record_every=0, held_to=views if factor else None))
        final[factor] = torch.tensor(records[-1].activation)
    # Units the uncapped picture drives well past their photos: capped, they stop lower.
    past = final[0.0] > 1.25 * caps
    assert past.sum() >= 4, (final, caps)
    assert (final[1.0] < final[0.0])[past].float().mean() >= 7 / 8
    # And the cap takes nothing else: a capped picture gets near its photos, or as far as the
    # uncapped one got (its clean image reads a little more than the crops the objective sees).
    reached = final[1.0] >= 0.8 * torch.minimum(final[0.0], caps)
    assert reached.float().mean() >= 7 / 8, (final, caps)


def test_a_capped_request_keys_its_views_and_a_bad_cap_is_refused(tiny_vit):
    spec = O.neuron(VIT_HIDDEN, 3).spec()
    capped = RunRequest("tiny_vit", spec, overrides={"drive_cap": 2.0})
    assert capped.config()["statistics_views"]["ranks"] == exemplar_stats.DEFAULT_RANKS
    assert capped.config()["preset"]["drive_cap"] == 2.0
    assert "drive_cap" not in RunRequest("tiny_vit", spec).config()["preset"]
    for bad in (0.5, -1.0, float("nan")):
        with pytest.raises(UserError, match="drive_cap is 0"):
            RunRequest("tiny_vit", spec, overrides={"drive_cap": bad}).check()
    with pytest.raises(UserError, match="neuron or channel"):
        RunRequest("tiny_vit", O.logit("heads.head", 1).spec(),
                   overrides={"drive_cap": 2.0}).check()
    with pytest.raises(UserError, match="one set of photo views per seed"):
        next(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 1), [0],
                      resolve_preset("robust", drive_cap=2.0), steps=2, held_to=[]))


def test_with_token_focus_the_cap_is_set_on_the_focused_value_it_stops(tiny_vit):
    # The loop pushes the unit's strongest quarter of patch tokens; a cap set on the views'
    # plain mean would stop it at a fraction of what the views reach on those tokens.
    units, views, objective, passes = _sixteen_units(tiny_vit)

    def focused(acts, items):
        return token_focus.focused(objective, acts[VIT_HIDDEN], acts.prefix_tokens, items,
                                   0.25, minimise=False)

    focused_caps = drive_cap.caps(focused, passes.clean, views, 1.0, minimise=False)
    plain_caps = drive_cap.caps(objective, passes.clean, views, 1.0, minimise=False)
    # Units whose photos' focused value is well past their plain mean: a cap on the mean
    # would stop their pictures below 0.8 of the focused cap.
    apart = focused_caps > 1.5 * plain_caps
    assert apart.sum() >= 4, (focused_caps, plain_caps)
    final = {}
    for factor in (0.0, 1.0):
        preset = resolve_preset("robust", **NO_PHOTO_PRIOR, drive_cap=factor, token_focus=0.25,
                                precision="fp32")
        records = list(optimise(tiny_vit, objective, [0] * len(units), preset, steps=60,
                                record_every=0, held_to=views if factor else None))
        with torch.no_grad():
            final[factor] = focused(passes.clean(records[-1].images), len(units))
    past = final[0.0] > 1.25 * focused_caps
    assert (past & apart).sum() >= 3, (final, focused_caps, plain_caps)
    assert (final[1.0] < final[0.0])[past].float().mean() >= 7 / 8
    reached = final[1.0] >= 0.8 * torch.minimum(final[0.0], focused_caps)
    assert reached[apart].all() and reached.float().mean() >= 7 / 8, (final, focused_caps)
