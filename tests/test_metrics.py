import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitviz.data.examples import measure_layer
from vitviz.data.photos import load_photos
from vitviz.models.hooks import run_and_capture
from vitviz.models.loaded import LoadedModel, Preprocessing
from vitviz.data.photo_sets import examples_for
from vitviz.quality import metrics
from vitviz.quality.plain_colour import plain_colour_values
from vitviz.rendering import objectives as O
from vitviz.store.runs import RunRequest, compute_result

from conftest import VIT_HIDDEN


def test_specificity_rewards_unit_specific_agreement_not_sameness():
    distinct = torch.eye(3)[:, None, :].repeat(1, 2, 1)  # 3 units x 2 seeds, one direction per unit
    figures = metrics.specificity(distinct)
    assert figures["same_unit"] == 1.0 and figures["different_unit"] == 0.0
    assert figures["identification"] == 1.0 and figures["chance"] == 1 / 3
    # Noise-like: every image looks the same to the feature model, whatever the unit.
    alike = F.normalize(torch.ones(3, 2, 4), dim=2)
    noisy = metrics.specificity(alike)
    assert noisy["same_unit"] > 0.99 and abs(noisy["specificity"]) < 1e-6
    assert noisy["identification"] == 0.0


class PatternDetectors(nn.Module):
    """Channel 0 answers a one-pixel checkerboard (what pixel ascent produces), channel 1 a
    smooth left-to-right ramp (a feature of the size of the image)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 8, padding=4, bias=False)
        checker = torch.tensor([[(-1.0) ** (i + j) for j in range(8)] for i in range(8)])
        ramp = torch.linspace(-1, 1, 8).repeat(8, 1)
        self.conv.weight.data = torch.stack([checker, ramp])[:, None].repeat(1, 3, 1, 1) / 64
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


def pattern_model() -> LoadedModel:
    return LoadedModel("patterns", PatternDetectors().requires_grad_(False),
                       Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64), "hand-built", "cnn")


def test_checkerboard_noise_loses_its_robust_activation_a_smooth_pattern_keeps_it():
    model = pattern_model()
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checkerboard = ((rows + cols) % 2).float().expand(3, -1, -1)
    ramp = (cols.float() / 63).expand(3, -1, -1)
    images = torch.stack([checkerboard, ramp])
    objective = O.channel("relu", (0, 1))
    clean = objective(run_and_capture(model.module, model.to_input(images), ["relu"]), 2)
    robust = metrics.robust_activation(model, objective, images)
    assert robust[0] < 0.3 * float(clean[0])  # a few pixels of shift and zoom undo the noise
    assert robust[1] > 0.8 * float(clean[1])  # the smooth pattern survives them


def test_robust_figures_rank_the_unit_the_views_drive_most_first(tiny_vit):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    views = metrics.robust_views(images)
    act = run_and_capture(tiny_vit.module, tiny_vit.to_input(views), [VIT_HIDDEN])[VIT_HIDDEN]
    mean = act[:, 1:].mean(dim=1).view(2, metrics.ROBUST_VIEWS, -1).mean(dim=1)
    strongest, weakest = int(mean[0].argmax()), int(mean[1].argmin())
    figures = metrics.robust_figures(tiny_vit, VIT_HIDDEN, [strongest, weakest], images)
    # A median over views: near the top (bottom) of 64 units, not necessarily first (last).
    assert figures["robust_rank"][0] <= 6 and figures["robust_rank"][1] >= 58
    assert figures["robust_activation"] == pytest.approx(
        [float(mean[0, strongest]), float(mean[1, weakest])], abs=1e-5)
    objective = O.neuron(VIT_HIDDEN, (strongest, weakest))
    assert metrics.robust_activation(tiny_vit, objective, images) == pytest.approx(
        figures["robust_activation"], abs=1e-6)


def test_dataset_examples_rank_photos_crops_and_patches(tiny_vit):
    photos = load_photos(["sklearn"])
    stats = measure_layer(tiny_vit, VIT_HIDDEN, photos, batch_size=7)
    assert stats.values.shape == (2 * 10, 64)  # each photo, plus its 3x3 crops
    assert stats.patch_values.shape == (2, 16, 64)
    top = stats.top(5, k=3)
    for kind in ("photo", "crop"):  # the drive's order (vitviz.models.drive), reported as values
        rows = [i for i, view in enumerate(stats.views) if view[2] == kind]
        strongest = stats.drive[rows, 5].argsort(descending=True)[:3].tolist()
        assert [e.activation for e in top[kind]] == [float(stats.values[rows[i], 5]) for i in strongest]
    values = [example.activation for example in top["patch"]]
    assert values == sorted(values, reverse=True)
    for kind in ("photo", "crop", "patch"):
        assert top[kind][0].kind == kind
        assert all(0 <= v <= 1 for example in top[kind] for v in example.box)
    assert stats.unit_max(5) == max(top["photo"][0].activation, top["crop"][0].activation)


def test_result_metrics_relate_activation_to_photos(tiny_vit, monkeypatch):
    monkeypatch.delenv("VITVIZ_PHOTOS", raising=False)  # the built-in photo set
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, (3, 3, 8, 8)).spec(), (0, 1, 0, 1),
                         "naive", {"steps": 6})
    result = compute_result(request, tiny_vit)
    figures = metrics.result_metrics(tiny_vit, result)
    units = [3, 3, 8, 8]  # each picture's own unit
    assert figures["activation"] == [curve[-1] for curve in result.activation]
    # The photo scale: each picture's unit at its strongest over the built-in photos and crops.
    photos = load_photos()
    values = measure_layer(tiny_vit, VIT_HIDDEN, photos).values
    photo_max = [float(values[:, unit].max()) for unit in units]
    assert photo_max[0] != photo_max[2]  # two units, two scales: a mix-up shows
    assert figures["unit_max_over_photos"] == pytest.approx(photo_max, abs=1e-6)
    assert figures["photos"] == len(photos)
    # Each picture measured for its own unit, over its shifted and zoomed views (as a batch of
    # its own here): the mean activation, and the median place of the unit among all 64.
    images = torch.stack([torch.from_numpy(image) for image in result.images])
    views = metrics.robust_views(images.permute(0, 3, 1, 2).float() / 255)
    act = run_and_capture(tiny_vit.module, tiny_vit.to_input(views), [VIT_HIDDEN])[VIT_HIDDEN]
    per_view = act[:, 1:].mean(dim=1).view(4, metrics.ROBUST_VIEWS, 64)  # [picture, view, unit]
    own = per_view[torch.arange(4), :, units]  # [picture, view]
    robust = own.mean(dim=1).tolist()
    ranks = (per_view > own[..., None]).sum(dim=2).add(1).float().median(dim=1).values.tolist()
    assert figures["robust_activation"] == pytest.approx(robust, abs=1e-5)
    # (to one place: a view whose units tie to 1e-6 may order them either way in another batch)
    assert figures["robust_rank"] == pytest.approx(ranks, abs=1)
    assert figures["relative_robust_activation"] == pytest.approx(
        [r / m for r, m in zip(robust, photo_max)], rel=1e-4)
    assert figures["specificity"]["units"] == 2 and figures["specificity"]["seeds"] == 2
    # Beside each picture, its unit's plain colour (vitviz.quality.plain_colour), and whether
    # the picture drives the unit past it.
    plain = plain_colour_values(tiny_vit, VIT_HIDDEN, units, examples_for(tiny_vit, VIT_HIDDEN))
    assert plain[0] != plain[2]
    assert figures["plain_colour"] == pytest.approx(plain, abs=1e-6)
    assert figures["relative_plain_colour"] == pytest.approx(
        [p / m for p, m in zip(plain, photo_max)], rel=1e-4)
    assert figures["beyond_plain_colour"] == [r > p for r, p in zip(robust, plain)]
    # No figure of raw activation relative to the photos: it is what adversarial noise wins.
    assert not {"relative_activation", "rank", "consistency"} & set(figures)


def test_a_minimising_run_is_measured_against_the_bottom_of_its_photos(tiny_vit, monkeypatch):
    monkeypatch.delenv("VITVIZ_PHOTOS", raising=False)
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, (3, 8)).spec(), (0, 0), "naive",
                         {"steps": 6}, minimise=True)
    figures = metrics.result_metrics(tiny_vit, compute_result(request, tiny_vit))
    stats = examples_for(tiny_vit, VIT_HIDDEN)
    assert figures["minimise"] and "relative_robust_activation" not in figures
    assert figures["unit_min_over_photos"] == [stats.unit_min(3), stats.unit_min(8)]
    robust = figures["robust_activation"]
    assert figures["below_photo_min"] == [r < m for r, m in
                                          zip(robust, figures["unit_min_over_photos"])]
    # Its plain colour is the most suppressing of the weakest views' colours, passed below.
    plain = plain_colour_values(tiny_vit, VIT_HIDDEN, [3, 8], stats, bottom=True)
    assert plain != plain_colour_values(tiny_vit, VIT_HIDDEN, [3, 8], stats)
    assert figures["plain_colour"] == pytest.approx(plain, abs=1e-6)
    assert figures["beyond_plain_colour"] == [r < p for r, p in zip(robust, plain)]


def test_robust_figures_do_not_depend_on_how_the_images_are_split(tiny_vit):
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    objective = O.neuron(VIT_HIDDEN, (1, 2, 3, 4, 5))
    whole = metrics.robust_activation(tiny_vit, objective, images, batch_size=64)
    split = metrics.robust_activation(tiny_vit, objective, images, batch_size=16)  # 2 per chunk
    assert split == pytest.approx(whole, abs=1e-6)


def test_a_lone_robust_activation_is_not_all_the_quality_figures():
    # What the Dataset examples page stored before it measured with result_metrics: such a
    # cached run is measured in full (to the same robust activation) when next shown.
    class Stored:
        metrics = {"robust_activation": [1.0]}

    assert not metrics.has_quality_figures(Stored)


def test_the_report_takes_its_quality_figures_from_quality_figures(tiny_vit, monkeypatch):
    import numpy as np

    from vitviz.data.photo_sets import photo_statistics
    from vitviz.quality import judge
    from vitviz.surveys import report

    real, answers = metrics.quality_figures, []

    def recorded(*args, **kwargs):
        answers.append(real(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(metrics, "quality_figures", recorded)
    # The judge is not what this checks.
    monkeypatch.setattr(report, "picture_references", lambda *args: None)
    monkeypatch.setattr(judge, "mis", lambda *args: None)
    monkeypatch.setattr(report, "pool_verdicts", lambda *args: {})
    layers = {layer: {"units": [0, 1, 2], "pool": None,
                      "examples": photo_statistics(tiny_vit, layer)}
              for layer in ("encoder.layers.encoder_layer_0.mlp.1", VIT_HIDDEN)}
    rng = np.random.default_rng(0)
    images = {layer: rng.integers(0, 256, (3, 2, 32, 32, 3), dtype=np.uint8) for layer in layers}
    reached = {layer: [-1e9, 1e9] * 3 for layer in layers}
    figures = report.preset_figures(tiny_vit, layers, images, images, reached, "judge")
    (answer,) = answers  # one call, every layer's pictures pooled
    assert figures["per_image"] == {key: answer[key] for key in
                                    ("relative_robust_activation", "robust_rank", "alive",
                                     "beyond_plain_colour")}
    assert figures["specificity"] == answer["specificity"] and answer["specificity"]["units"] == 6
    assert figures["alive"] == 0.5 and figures["relative_robust_activation_median"] == (
        metrics.finite_median(answer["relative_robust_activation"]))
    assert answer["unit_max_over_photos"][:2] == [layers["encoder.layers.encoder_layer_0.mlp.1"][
        "examples"].unit_max(0)] * 2
