"""Accentuated exemplars: a unit's own photos, changed only as much as it takes to drive it."""
import numpy as np
import torch
import pytest

from vitviz.analysis.accentuation import accentuation_change, change
from vitviz.data.examples import crop_image
from vitviz.data.photo_sets import photo_statistics
from vitviz.errors import UserError
from vitviz.rendering import objectives as O
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest, cached_result, compute_result
from vitviz.surveys import report

from conftest import VIT_HIDDEN


def run(model, units, minimise=False, rank=0, steps=24):
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, tuple(units)).spec(), (0,) * len(units),
                         overrides={"steps": steps, "precision": "fp32"}, record_every=steps,
                         minimise=minimise, accentuate=rank)
    return request, compute_result(request, model)


def test_each_picture_starts_as_its_units_photo_and_the_units_rise_staying_near_it(tiny_vit):
    units = list(range(0, 64, 8))
    request, result = run(tiny_vit, units)
    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    assert request.config()["accentuate"]["rank"] == 0
    for item, unit in enumerate(units):
        source = result.metrics["accentuated_from"][item]
        best = stats.extreme_views(unit, 1)[0]
        assert (source["photo"], source["box"]) == (best.photo, best.box)
        start = np.asarray(crop_image(stats.image(best.photo), best.box,
                                      result.images[item].shape[0]), dtype=float)
        # Step 0's picture is the photo (up to 8-bit rounding and the logit's clamp).
        assert np.abs(result.checkpoints[0][item] - start).mean() < 3
    curves = np.array(result.activation)
    assert (curves[:, -1] > curves[:, 0]).mean() >= 7 / 8
    from_noise = compute_result(RunRequest(
        "tiny_vit", O.neuron(VIT_HIDDEN, tuple(units)).spec(), (0,) * len(units),
        overrides={"steps": 24, "precision": "fp32"}, record_every=24), tiny_vit)
    photos = np.array(result.checkpoints[0], dtype=float)
    near = np.abs(np.array(result.images, dtype=float) - photos).mean(axis=(1, 2, 3))
    far = np.abs(np.array(from_noise.images, dtype=float) - photos).mean(axis=(1, 2, 3))
    assert (near < far).all()
    # What accentuation changed is read from the run itself: its photo is step 0's picture.
    for item in range(len(units)):
        shown = accentuation_change(result, item)
        assert np.array_equal(shown.photo, result.checkpoints[0][item])
        assert np.array_equal(shown.picture, result.images[item])
        assert shown.mean_levels == pytest.approx(near[item], rel=1e-4) and shown.gain > 0
    assert accentuation_change(from_noise) is None


def test_the_change_view_shows_where_and_which_colour_accentuation_added():
    photo = np.full((32, 32, 3), 100, dtype=np.uint8)
    picture = photo.copy()
    picture[:8, :8, 0] += 40  # redder in one corner only
    shown = change(photo, picture)
    assert shown.mean_levels == pytest.approx(40 * 64 / (32 * 32 * 3))
    corner, rest = shown.difference[:8, :8], shown.difference[8:, 8:]
    assert (corner[..., 0] == 255).all() and (corner[..., 1:] == 128).all()
    assert (rest == 128).all()
    taken = change(picture, photo)  # the reverse change: the complement, below grey
    assert (taken.difference[:8, :8, 0] == 0).all() and taken.gain == shown.gain
    unchanged = change(photo, photo)
    assert unchanged.gain == 0 and (unchanged.difference == 128).all()


def drives(model, images, units) -> torch.Tensor:
    """Each picture's drive (`vitviz.models.drive`) of its unit, seen at the model's input size."""
    from vitviz.models.drive import capture_drives
    from vitviz.models.forward import activations
    from vitviz.models.tokens import unit_values

    pictures = torch.tensor(np.array(images)).permute(0, 3, 1, 2).float() / 255
    pictures = torch.nn.functional.interpolate(pictures, size=model.preprocessing.size,
                                               mode="bilinear", antialias=True)
    with torch.no_grad(), capture_drives(model.module, [VIT_HIDDEN]) as captured:
        activations(model, model.normalise(pictures), [VIT_HIDDEN])
    values = unit_values(captured[VIT_HIDDEN][-1], "patch", model.prefix_tokens)
    return values[range(len(units)), list(units)]


def test_a_minimising_accentuation_starts_from_the_weakest_photo(tiny_vit):
    units = list(range(0, 64, 4))
    _, result = run(tiny_vit, units, minimise=True, steps=8)
    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    for item, unit in enumerate(units):
        assert result.metrics["accentuated_from"][item]["photo"] == \
            stats.extreme_views(unit, 1, bottom=True)[0].photo
    # Driven down, as a rate over units (a random model's units are noisy): the drive, since
    # a GELU output already at its dip cannot fall.
    lowered = drives(tiny_vit, result.images, units) < drives(tiny_vit, result.checkpoints[0], units)
    assert lowered.float().mean() >= 0.75


def test_a_bad_accentuation_is_refused_before_any_work():
    with pytest.raises(UserError, match="rank"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(), accentuate=-1).check()
    with pytest.raises(UserError, match="neuron or channel"):
        RunRequest("tiny_vit", O.logit("heads.head", 1).spec(), accentuate=0).check()
    with pytest.raises(UserError, match="one rank per seed"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(), (0,), accentuate=(0, 1)).check()


def test_a_units_exemplars_accentuated_in_one_batch_are_each_its_single_run(tiny_vit, tmp_path,
                                                                           monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    overrides = {"steps": 4, "precision": "fp32"}
    ranks = [0, 3, 1]
    batched = [run.images[0] for run in report.accentuated_batch(
        tiny_vit, VIT_HIDDEN, 5, ranks, True, "robust", overrides, cache)]
    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    for rank, image in zip(ranks, batched):
        single = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0,), "robust",
                            overrides, minimise=True, accentuate=rank)
        stored = cache.get(single.key())
        assert stored is not None and stored.config == single.config()
        view = stats.extreme_views(5, rank + 1, bottom=True)[rank]
        assert stored.metrics["accentuated_from"][0]["photo"] == view.photo
        alone = compute_result(single, tiny_vit).images[0]
        assert np.abs(alone.astype(int) - image.astype(int)).max() <= 2  # batch = solo
    monkeypatch.setattr(report, "compute_batch", lambda *a, **k: pytest.fail("recomputed"))
    again = [run.images[0] for run in report.accentuated_batch(
        tiny_vit, VIT_HIDDEN, 5, ranks, True, "robust", overrides, cache)]
    assert all((a == b).all() for a, b in zip(again, batched))


def test_a_capped_accentuation_reads_the_views_it_is_given_and_changes_its_photo_less(
        tiny_vit, tmp_path):
    # With a drive cap, the objective stops pushing at the strongest of the reference views, so
    # a photo that already drives the unit to that level is left to the regulariser.
    overrides = {"steps": 16, "precision": "fp32"}
    cap = {**overrides, "drive_cap": 1.0}
    cache = ResultCache(tmp_path / "cache")

    def accentuated(knobs: dict, rank: int, **views) -> np.ndarray:
        request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0,), "robust", knobs,
                             accentuate=rank, **views)
        return cached_result(request, cache, lambda name: tiny_vit)[0].images[0]

    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    for rank in (0, 1, 2):
        held = accentuated(cap, rank, statistics_views=((1, 2),))
        pushed = accentuated(overrides, rank)
        size = held.shape[0]
        view = stats.extreme_views(5, rank + 1)[rank]
        photo = np.asarray(crop_image(stats.image(view.photo), view.box, size), dtype=float)
        assert np.abs(held - photo).mean() < np.abs(pushed - photo).mean()


def changed_from_photo(model, **knobs) -> tuple[RunRequest, np.ndarray]:
    """Units 5, 9 and 13 accentuated from their strongest photos for 12 steps with `knobs`: the
    request and each picture's change from its photo [3, H, W, 3]."""
    units = (5, 9, 13)
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, units).spec(), (0,) * len(units),
                         overrides={"steps": 12, "precision": "fp32", **knobs},
                         record_every=12, accentuate=0)
    result = compute_result(request, model)
    change = np.array(result.images, dtype=float) - np.array(result.checkpoints[0], dtype=float)
    return request, change


def test_the_accentuation_weight_sets_how_far_the_picture_leaves_its_photo(tiny_vit):
    def accentuated(weight):
        request, change = changed_from_photo(tiny_vit, accentuate_weight=weight)
        return request, np.abs(change).mean(axis=(1, 2, 3))

    default, held = accentuated(10.0)
    # The default weight leaves the key as it was before the weight was a knob.
    assert "accentuate_weight" not in default.config()["preset"]
    assert default.config()["accentuate"]["weight"] == 10.0
    loose, freer = accentuated(0.5)
    assert loose.config()["accentuate"]["weight"] == 0.5
    assert (freer > held).all()
    with pytest.raises(UserError, match="accentuate_weight"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(),
                   overrides={"accentuate_weight": 2.0}).check()
    with pytest.raises(UserError, match="accentuate_weight"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(), accentuate=0,
                   overrides={"accentuate_weight": 0.0}).check()


def test_a_steeper_residual_moves_only_the_fine_detail_less():
    from vitviz.rendering.accentuate import PhotoImage
    from vitviz.rendering.params import _frequencies

    start = torch.full((1, 3, 32, 32), 0.5)
    same = PhotoImage(start, decay=1.5, floor=2.0, residual_decay=1.5)
    steep = PhotoImage(start, decay=1.5, floor=2.0, residual_decay=2.5)
    frequency = _frequencies(32)
    assert torch.allclose(same.scale, frequency.clamp(min=2 / 32) ** -1.5)
    at_floor = frequency <= 2 / 32
    assert torch.allclose(steep.scale[at_floor], same.scale[at_floor])
    finer = frequency > 2 / 32
    assert (steep.scale[finer] < same.scale[finer]).all()


def fine_share(change: np.ndarray) -> np.ndarray:
    """Per picture [N, H, W, 3], the share of its change's power above a quarter of the band."""
    power = np.abs(np.fft.rfft2(change, axes=(1, 2))) ** 2
    fy = np.abs(np.fft.fftfreq(change.shape[1]))[:, None]
    fx = np.fft.rfftfreq(change.shape[2])[None, :]
    fine = (np.sqrt(fx ** 2 + fy ** 2) > 0.125)[None, :, :, None]
    return (power * fine).sum(axis=(1, 2, 3)) / power.sum(axis=(1, 2, 3))


def test_the_accentuation_decay_sets_how_fine_the_change_is(tiny_vit):
    def accentuated(decay):
        request, change = changed_from_photo(tiny_vit, accentuate_decay=decay)
        return request, fine_share(change)

    default, smooth = accentuated(2.0)
    assert "accentuate_decay" not in default.config()["preset"]
    assert default.config()["accentuate"]["decay"] == 2.0
    textured, fine = accentuated(1.0)
    assert textured.config()["accentuate"]["decay"] == 1.0
    assert (fine > smooth).all()
    with pytest.raises(UserError, match="accentuate_decay"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(),
                   overrides={"accentuate_decay": 1.5}).check()
    with pytest.raises(UserError, match="accentuate_decay"):
        RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 1).spec(), accentuate=0,
                   overrides={"accentuate_decay": 9.0}).check()


def test_a_change_packed_into_a_few_patches_is_held_harder_than_the_same_change_spread_out():
    from vitviz.rendering.accentuate import feature_distance

    start = torch.zeros(1, 1 + 256, 8)  # one prefix token, 256 patches
    spread, even, packed = torch.ones(8), start.clone(), start.clone()
    even[:, 1:] = 0.5  # every patch a little
    packed[:, 1:5] = 4.0  # 4 patches a lot: the same summed squared change
    assert even.square().sum() == packed.square().sum()
    at_even = feature_distance(even, start, spread, 1)
    at_packed = feature_distance(packed, start, spread, 1)
    assert torch.allclose(at_even, torch.tensor([0.25]))  # an even change: its mean square
    assert at_packed > 7 * at_even
    picture = start.clone().requires_grad_(True)
    feature_distance(picture, start, spread, 1).sum().backward()
    assert torch.isfinite(picture.grad).all()  # the picture still its photo


def test_the_report_judges_exemplars_accentuated_either_way(tiny_vit, tmp_path):
    variant = ("robust", {"steps": 2, "precision": "fp32"})
    with pytest.raises(UserError, match="picture, gradient"):
        report.compare(tiny_vit, {VIT_HIDDEN: [0, 1]}, {"robust": variant}, [0, 1], None,
                       "efficientnet_lite0", accentuated=variant, accentuate_by="paint")
    found = report.compare(tiny_vit, {VIT_HIDDEN: [0, 1]}, {"robust": variant}, [0, 1],
                           ResultCache(tmp_path), "efficientnet_lite0", accentuated=variant,
                           accentuate_by="gradient")
    for judged in found.accentuated.values():
        assert judged["method"] == "gradient" and "shares" not in judged
        assert 0 <= judged["pictures"] <= 1 and 0 <= judged["starts"]["pictures"] <= 1
