"""The plain-colour baseline: a unit's value on a flat field in the colour of its extreme photo
views, beside its picture (vitviz.quality.plain_colour)."""
import pytest
import torch
from torch import nn

from vitviz.data.examples import measure_layer
from vitviz.data.photos import load_photos
from vitviz.models.loaded import LoadedModel, Preprocessing
from vitviz.quality.plain_colour import plain_colour_values


class ColourAndPattern(nn.Module):
    """Channel 0 reads only colour (a 2x2 mean of a colour contrast: on any view its mean over
    the map is, up to the border, its value on a flat field of the view's mean colour);
    channel 1 a one-pixel checkerboard, which no flat field holds."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 2, bias=False)
        colour = torch.tensor([1.0, -0.5, 0.25])[:, None, None].expand(3, 2, 2) / 4
        checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).expand(3, 2, 2)
        self.conv.weight.data = torch.stack([colour, checker])

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def colour_model():
    model = LoadedModel("colour", ColourAndPattern().requires_grad_(False),
                        Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64), "hand-built", "cnn")
    return model, measure_layer(model, "conv", load_photos())


def test_a_unit_that_reads_colour_is_driven_by_its_plain_colour_as_by_its_strongest_photo(
        colour_model):
    model, photos = colour_model
    up = plain_colour_values(model, "conv", [0], photos)
    down = plain_colour_values(model, "conv", [0], photos, bottom=True)
    assert up[0] == pytest.approx(photos.unit_max(0), rel=0.03)
    assert down[0] == pytest.approx(photos.unit_min(0), rel=0.03)
    assert photos.unit_min(0) < 0 < photos.unit_max(0)  # two sides: a mix-up of them shows


def test_a_plain_colour_does_not_drive_a_pattern_unit(colour_model):
    model, photos = colour_model
    (value,) = plain_colour_values(model, "conv", [1], photos)
    assert abs(value) < 1e-5 < photos.unit_max(1)


def test_plain_colour_values_follow_the_units_in_the_order_given(colour_model):
    model, photos = colour_model
    alone = [plain_colour_values(model, "conv", [unit], photos)[0] for unit in (0, 1)]
    assert plain_colour_values(model, "conv", [1, 0, 1], photos) == pytest.approx(
        [alone[1], alone[0], alone[1]], abs=1e-6)
