import torch
import torch.nn.functional as F
from torch import nn

from vitviz.data.examples import LayerActivations, measure_layer, photo_views
from vitviz.data.photos import load_photos
from vitviz.models.drive import GELU_TURN, drive
from vitviz.models.hooks import run_and_capture
from vitviz.models.tokens import unit_values
from vitviz.quality import judge

from conftest import VIT_HIDDEN


def test_drive_rises_with_the_pre_activation_and_is_the_output_where_the_rectifier_rises():
    pre = torch.linspace(-8, 3, 2001)
    for module, rises_from in ((nn.GELU(), GELU_TURN), (nn.ReLU(), 0.0)):
        values = drive(pre, module)
        assert (values.diff() > 0).all()
        rising = pre >= rises_from
        assert torch.equal(values[rising], module(pre)[rising])
    assert (F.gelu(pre).diff() < 0).any()  # what the drive repairs


def tail_layer(photos: int = 10, with_drive: bool = True) -> LayerActivations:
    """One GELU unit whose every photo sits on the tail: photo p at pre-activation -3 + 0.2 p."""
    views = [(p, (0.0, 0.0, 1.0, 1.0), "photo") for p in range(photos)]
    pre = torch.tensor([-3 + 0.2 * p for p in range(photos)])[:, None]
    return LayerActivations("layer", "patch", views, F.gelu(pre), None,
                            [f"photo{p}" for p in range(photos)],
                            drive(pre, nn.GELU()) if with_drive else None)


def test_the_judge_ranks_a_tail_unit_by_what_drives_it_not_by_its_output():
    views = torch.eye(10)
    by_output = judge.tasks(judge.ViewPool(tail_layer(with_drive=False), views), 0,
                            "standard", count=3)
    assert by_output.high == [0, 1, 2]  # the output's order calls the furthest photos strongest
    pool = judge.ViewPool(tail_layer(), views)
    task = judge.tasks(pool, 0, "standard", count=3)
    assert task.high == [9, 8, 7] and task.low == [0, 1, 2]
    assert judge.natural_references(pool, 0, task, count=2) == ([6, 5], [3, 4])


def test_a_tail_units_top_patches_follow_its_drive_and_show_its_output():
    # Two photos of 4 patches, one unit on the tail: patch i of photo p at -3 + 0.3 (4 p + i).
    pre = torch.tensor([[-3 + 0.3 * (4 * p + i) for i in range(4)] for p in range(2)])[..., None]
    stats = tail_layer(photos=2)
    stats.patch_values, stats.patch_drive = F.gelu(pre), drive(pre, nn.GELU())
    top = stats.top(0, k=3)["patch"]
    assert [(e.photo, e.box[:2]) for e in top] == [("photo1", (0.5, 0.5)), ("photo1", (0.0, 0.5)),
                                                   ("photo1", (0.5, 0.0))]
    assert [e.activation for e in top] == F.gelu(pre[1, [3, 2, 1], 0]).tolist()
    stats.patch_drive = None  # by output, the deepest patches would come first
    assert [e.photo for e in stats.top(0, k=3)["patch"]] == ["photo0"] * 3


def test_measured_drive_is_the_rectifier_input_reduced_like_the_output(tiny_vit):
    photos = load_photos(["sklearn"])
    stats = measure_layer(tiny_vit, VIT_HIDDEN, photos, batch_size=7)
    pre_layer = VIT_HIDDEN.replace("mlp.1", "mlp.0")
    assert measure_layer(tiny_vit, pre_layer, photos).drive is None  # a linear layer keeps order
    inputs, _ = photo_views(photos, tiny_vit.preprocessing.size)
    pre = run_and_capture(tiny_vit.module, tiny_vit.normalise(inputs), [pre_layer])[pre_layer]
    expected = unit_values(drive(pre, nn.GELU()), "patch", tiny_vit.prefix_tokens)
    assert stats.drive.shape == stats.values.shape
    assert torch.allclose(stats.drive, expected, atol=1e-5)
    photo_rows = [i for i, view in enumerate(stats.views) if view[2] == "photo"]
    patch_drive = drive(pre, nn.GELU())[photo_rows, tiny_vit.prefix_tokens:]
    assert torch.allclose(stats.patch_drive, patch_drive, atol=1e-5)
