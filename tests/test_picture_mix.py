"""Accentuated exemplars drawn from the unit's picture: each photo mixed with it as little as it
takes to drive the unit to its extreme over the photos."""
import torch

from vitviz.data.photo_sets import photo_statistics
from vitviz.rendering import objectives as O
from vitviz.rendering import picture_mix
from vitviz.rendering.exemplar_stats import reference_views
from vitviz.store.runs import RunRequest, compute_result

from conftest import VIT_HIDDEN

SHARES = picture_mix.SHARES


def test_the_share_is_the_smallest_that_reaches_the_extreme_else_the_closest_else_none():
    drives = torch.tensor([
        [1.0, 1.5, 2.0, 2.6, 3.0, 3.5, 4.0],  # reaches 2.5 at the third share
        [1.0, 1.1, 1.2, 1.3, 1.2, 1.1, 1.0],  # never reaches it: the closest
        [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # every share lowers it: the photo unchanged
        [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0],  # the photo itself is there: unchanged
    ])
    assert picture_mix.chosen_shares(drives, 2.5, minimise=False) == [SHARES[2], SHARES[2], 0.0,
                                                                      0.0]
    # Driven down, the same rule mirrored: at most the minimum, else the lowest, else none.
    assert picture_mix.chosen_shares(-drives, -2.5, minimise=True) == [SHARES[2], SHARES[2], 0.0,
                                                                       0.0]


def test_mixing_keeps_most_of_each_photo_and_takes_the_pictures_in_turn():
    photos = torch.zeros(3, 3, 8, 8)
    pictures = torch.stack([torch.ones(3, 8, 8), torch.full((3, 8, 8), 0.5)])
    made = picture_mix.mixed(photos, pictures, [0.3, 0.2, 0.0])
    assert torch.allclose(made[:, 0, 0, 0], torch.tensor([0.3, 0.1, 0.0]))


def test_mixed_exemplars_drive_most_units_harder_than_their_photos_both_ways(tiny_vit):
    units = list(range(0, 64, 4))
    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    ranks = [[3, 4, 5]] * len(units)  # exemplars below the strongest views, as the judge's are
    moved = {False: 0, True: 0}  # exemplars the mix moves the unit's way
    for minimise in (False, True):
        request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, tuple(units)).spec(),
                             (0,) * len(units), overrides={"steps": 24, "precision": "fp32"},
                             record_every=24, minimise=minimise)
        result = compute_result(request, tiny_vit)
        size = result.images[0].shape[0]
        photos = reference_views(stats, units, ranks, minimise, size)
        extremes = reference_views(stats, units, [[0]] * len(units), minimise, size)
        for item, unit in enumerate(units):
            picture = torch.as_tensor(result.images[item]).permute(2, 0, 1)[None].float() / 255
            made = picture_mix.accentuated(tiny_vit, VIT_HIDDEN, unit, photos[item], picture,
                                           extremes[item], minimise)
            assert all(share in (0.0, *SHARES) for share in made.shares)
            # Never more than the largest share of the picture in any pixel.
            change = (made.images - photos[item]).abs()
            assert (change <= max(SHARES) * (picture - photos[item]).abs() + 1e-6).all()
            # The drive reported is the drive of the images returned.
            again = picture_mix.unit_drive(tiny_vit, VIT_HIDDEN, unit, made.images)
            assert torch.allclose(again, torch.tensor(made.drive), atol=1e-4)
            sign = -1 if minimise else 1
            gained = [sign * (after - before) for after, before in zip(made.drive,
                                                                        made.photo_drive)]
            assert min(gained) >= -1e-5  # a share is taken only where it moves the unit its way
            moved[minimise] += sum(gain > 0 for gain in gained)
    # A random-init network's 24-step pictures: most of the exemplars move, not all.
    assert min(moved.values()) >= 0.5 * 3 * len(units)
