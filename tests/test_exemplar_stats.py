"""The exemplar-statistics prior: pictures made of the kinds of patches the unit's photos hold."""
import pytest
import torch

from vitviz.data import references
from vitviz.data.photo_sets import examples_for
from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.quality import judge
from vitviz.rendering import exemplar_stats, natural
from vitviz.rendering import objectives as O
from vitviz.models.layers import block_depth
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import PRESETS
from vitviz.store.runs import RunRequest

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def test_the_distance_ignores_where_a_patch_sits_and_counts_what_kind_it_is():
    reference = torch.randn(1, 50, 4)
    sorted_reference = reference[0].sort(dim=0).values[None]
    spread = torch.ones(4)
    shuffled = reference[:, torch.randperm(50)]
    assert exemplar_stats.distance(shuffled, sorted_reference, 1, spread, 0).item() < 1e-10
    brighter = shuffled + 0.5
    assert exemplar_stats.distance(brighter, sorted_reference, 1, spread, 0).item() == \
        pytest.approx(0.25)
    # A crop with fewer tokens is compared with as many of the reference's quantiles: the
    # reference's deciles, in any order, are at distance 0; its lowest tenth is not.
    deciles = sorted_reference[:, 2::5][:, torch.randperm(10)]
    assert exemplar_stats.distance(deciles.repeat(2, 1, 1), sorted_reference, 2, spread,
                                   0).tolist() == [0.0, 0.0]
    lowest = sorted_reference[:, :10]
    assert exemplar_stats.distance(lowest, sorted_reference, 1, spread, 0).item() > 0.5


@pytest.mark.parametrize("knob", ["exemplar_stats", "exemplar_deep"])
def test_the_prior_brings_pictures_nearer_their_units_photos_and_the_units_still_rise(
        tiny_vit, knob, monkeypatch):
    units = tuple(range(0, 64, 8))
    layer = natural.first_block(tiny_vit)
    if knob == "exemplar_deep":
        # tiny_vit's unit layer is fed by its first block, where the first prior acts too: held
        # at another layer, the deep prior shows it acts where feeding_block says.
        layer = "encoder.layers.encoder_layer_1"
        monkeypatch.setattr(exemplar_stats, "feeding_block", lambda model, target: layer)
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    views = exemplar_stats.reference_views(examples, units, [range(exemplar_stats.VIEWS)] * 8,
                                           False, tiny_vit.preprocessing.size)
    reference = exemplar_stats.reference(tiny_vit, layer, views)
    spread = natural.photo_statistics(tiny_vit, layer)["spread"]
    found = {}
    for weight in (0.0, 1.0):
        preset = resolve_preset("robust", **{**NO_PHOTO_PRIOR, knob: weight}, precision="fp32")
        records = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, units), [0] * 8, preset,
                                steps=40, record_every=0, held_to=views if weight else None))
        with torch.no_grad():
            act = activations(tiny_vit, tiny_vit.to_input(records[-1].images), [layer])[layer]
        unlike = exemplar_stats.distance(act, reference, 1, spread, tiny_vit.prefix_tokens)
        rise = torch.tensor(records[-1].activation) > torch.tensor(records[0].activation)
        found[weight] = unlike, rise
    assert (found[1.0][0] < found[0.0][0]).float().mean() >= 7 / 8, found
    assert found[1.0][1].float().mean() >= 7 / 8, "the prior may slow a unit, not stop it"


def test_the_deep_prior_reads_the_stream_into_the_units_block(tiny_vit):
    first, second = "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"
    assert exemplar_stats.feeding_block(tiny_vit, VIT_HIDDEN) == first
    assert exemplar_stats.feeding_block(tiny_vit, second) == first
    assert exemplar_stats.feeding_block(tiny_vit, "heads.head") == second
    # The first block reads the patch embedding, which declares no role: its output stands in.
    assert exemplar_stats.feeding_block(tiny_vit, "encoder.layers.encoder_layer_0.mlp.1") == first
    with pytest.raises(UserError, match="not a layer"):
        exemplar_stats.feeding_block(tiny_vit, "encoder.layers.encoder_layer_7.mlp.1")


DEEP = {"exemplar_stats": 5.0, "exemplar_stats_from": 0.6}  # the prior from block 8 of 12 on


def test_a_request_picks_each_units_own_views_and_keys_them(tiny_vit):
    spec = O.neuron(VIT_HIDDEN, (3, 5)).spec()
    plain = RunRequest("tiny_vit", spec, (0, 0), overrides=NO_PHOTO_PRIOR)
    default = RunRequest("tiny_vit", spec, (0, 0))
    held = RunRequest("tiny_vit", spec, (0, 0), overrides=DEEP)
    chosen = RunRequest("tiny_vit", spec, (0, 0), overrides=DEEP,
                        statistics_views=((0, 2), (1, 4, 6)))
    assert "statistics_views" not in plain.config() and "photos" not in plain.config()
    # The default holds a unit's picture to its own photos: it reads (and is keyed by) the set.
    assert default.config()["statistics_views"]["ranks"] == exemplar_stats.DEFAULT_RANKS
    assert "photos" in default.config() and default.reference_layer() == (VIT_HIDDEN, "patch")
    assert plain.reference_layer() is None
    assert held.config()["statistics_views"]["ranks"] == exemplar_stats.DEFAULT_RANKS
    assert held.config()["preset"]["exemplar_stats_from"] == 0.6
    assert len({plain.key(), default.key(), held.key(), chosen.key()}) == 4
    for request in (held, chosen):
        request.check()
    # An objective with no unit of its own, or a start from a photo (held to that photo),
    # has no unit's photos to borrow from: the run goes on without the prior.
    for other in (RunRequest("tiny_vit", O.logit("heads.head", 1).spec(), overrides=DEEP),
                  RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 3).spec(), overrides=DEEP,
                             accentuate=0)):
        other.check()
        assert "statistics_views" not in other.config()
        assert other.scoped_preset().exemplar_stats == 0 and other.reference_layer() is None


def test_a_run_the_default_prior_cannot_hold_keeps_the_key_it_had_without_it():
    # An accentuated exemplar and an objective other than a unit's run without the prior (and
    # without yielding, which has nothing left to yield to): the pictures, and so the keys,
    # are those of the default before it held pictures to their unit's photos.
    for kind in ({"objective": O.logit("heads.head", 1).spec()},
                 {"objective": O.neuron(VIT_HIDDEN, 3).spec(), "accentuate": 0},
                 {"objective": O.neuron(VIT_HIDDEN, 3).spec(), "accentuate": 0,
                  "minimise": True}):
        default = RunRequest("tiny_vit", **kind)
        assert default.key() == RunRequest("tiny_vit", **kind, overrides=NO_PHOTO_PRIOR).key()
        assert "priors_yield" not in default.config()["preset"]
    unit = O.neuron(VIT_HIDDEN, 3).spec()
    assert RunRequest("tiny_vit", unit).key() != RunRequest("tiny_vit", unit,
                                                            overrides=NO_PHOTO_PRIOR).key()


@pytest.mark.parametrize("request_args, match", [
    ({"overrides": NO_PHOTO_PRIOR, "statistics_views": ((0,),)}, "exemplar_deep or drive_cap"),
    ({"overrides": DEEP, "statistics_views": ((0,), (1,))}, "one set"),
    ({"overrides": DEEP, "statistics_views": ((5000,),)}, "0 to"),
    ({"overrides": {"exemplar_stats": -1.0}}, "weight from 0 to 100"),
    ({"overrides": {"exemplar_stats_from": 1.5}}, "depth into the model from 0 to 1"),
    ({"overrides": {"exemplar_deep": 101.0}}, "exemplar_deep is a weight from 0 to 100"),
])
def test_a_bad_prior_is_refused_before_any_work(request_args, match):
    with pytest.raises(UserError, match=match):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(), (0,), **request_args).check()
    with pytest.raises(UserError, match="neuron or channel"):
        RunRequest("tiny_vit", O.logit("heads.head", 1).spec(),
                   overrides={"drive_cap": 2.0}).check()


def test_the_prior_from_a_depth_holds_deep_units_and_leaves_shallow_ones_alone(tiny_vit):
    shallow = "encoder.layers.encoder_layer_0.mlp.1"
    assert block_depth(tiny_vit, shallow) < DEEP["exemplar_stats_from"] <= \
        block_depth(tiny_vit, VIT_HIDDEN)

    def final(layer: str, **knobs):
        preset = resolve_preset("robust", precision="fp32", **knobs)
        records = list(optimise(tiny_vit, O.neuron(layer, (3, 9)), [0, 1], preset, steps=3,
                                record_every=0))
        return records[-1].images

    assert torch.equal(final(shallow, **DEEP), final(shallow, **NO_PHOTO_PRIOR))
    assert not torch.equal(final(VIT_HIDDEN, **DEEP), final(VIT_HIDDEN, **NO_PHOTO_PRIOR))
    # Without views of its own, the loop holds each unit to its photo-disjoint exemplars.
    views = exemplar_stats.unit_views(tiny_vit, O.neuron(VIT_HIDDEN, (3, 9)), 2, False)
    held = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, (3, 9)), [0, 1],
                         resolve_preset("robust", precision="fp32", **DEEP), steps=3,
                         record_every=0, held_to=views))[-1].images
    assert torch.equal(held, final(VIT_HIDDEN, **DEEP))
    with pytest.raises(UserError, match="one set of photo views per seed"):
        next(optimise(tiny_vit, O.neuron(VIT_HIDDEN, (3, 9)), [0, 1],
                      resolve_preset("robust", **DEEP), steps=1, held_to=views[:1]))


def test_a_layers_depth_is_the_share_of_blocks_up_to_its_own(tiny_vit):
    assert block_depth(tiny_vit, "conv_proj") == 0.5  # before the first block: in it
    assert block_depth(tiny_vit, "encoder.layers.encoder_layer_0.mlp.1") == 0.5
    assert block_depth(tiny_vit, "encoder.layers.encoder_layer_0") == 0.5
    assert block_depth(tiny_vit, VIT_HIDDEN) == 1.0
    assert block_depth(tiny_vit, "heads.head") == 1.0
    with pytest.raises(UserError, match="not a layer"):
        block_depth(tiny_vit, "encoder.layers.encoder_layer_7.mlp.1")


def test_the_prior_holds_where_a_units_photos_and_its_depth_say():
    preset = PRESETS["robust"].with_overrides(**DEEP)
    deep, shallow = 0.75, 0.5
    assert preset.scoped(True, False, deep) is preset
    assert preset.scoped(True, False, None) is preset  # before the model is at hand
    for off in (preset.scoped(True, False, shallow), preset.scoped(False, False, deep),
                preset.scoped(True, True, deep)):
        assert off.exemplar_stats == 0 and not off.reads_reference_views
        assert "exemplar_stats" not in off.knobs() and "exemplar_stats_from" not in off.knobs()
    everywhere = preset.with_overrides(exemplar_stats_from=0.0)
    assert everywhere.scoped(True, False, 0.0) is everywhere
    assert "exemplar_stats_from" not in everywhere.knobs()
    assert PRESETS["robust"].scoped(True, False, deep) is PRESETS["robust"]


def test_no_picture_is_held_to_a_photo_its_judge_queries(tiny_vit):
    examples = examples_for(tiny_vit, VIT_HIDDEN)
    pool = judge.pool_for(examples, judge.DEFAULT_JUDGE)
    for unit in (2, 11, 30):
        queried = judge.tasks(pool, unit, "photo_disjoint").excluded_photos
        assert queried
        for bottom in (False, True):
            ranks = exemplar_stats.default_ranks(examples, unit, bottom)
            assert len(ranks) == exemplar_stats.VIEWS
            photos = dict(enumerate(photo for _, photo in pool.ranked(unit, bottom)))
            assert not {photos[rank] for rank in ranks} & queried
    # The same views as the judge's natural exemplars, and as the accentuated exemplars' starts.
    assert exemplar_stats.default_ranks(examples, 2, False) == \
        references.exemplar_ranks(pool, 2, exemplar_stats.VIEWS)[0]


def test_a_set_too_small_for_the_judge_gives_the_strongest_views():
    class Few:
        def ranked(self, unit, bottom=False):
            return [(key, key) for key in range(30)]

    assert exemplar_stats.default_ranks(Few(), 0, False) == list(range(exemplar_stats.VIEWS))
