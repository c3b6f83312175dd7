"""The quality figures' central claim, on a real pretrained ViT: neither pure noise nor the naive
method's adversarial pictures can win them, while the default preset's pictures do."""
import statistics

import pytest
import torch

from vitviz.data.examples import measure_layer
from vitviz.data.photos import load_photos
from vitviz.models.registry import load_model
from vitviz.quality import metrics
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise
from vitviz.surveys.report import choose_units

LAYER = "encoder.layers.encoder_layer_2.mlp.1"  # an early block keeps this fast enough for CI
SEEDS = (0, 1)
STEPS = 24


@pytest.fixture(scope="module")
def dinov2():
    return load_model("dinov2_vits14", "cpu")


@pytest.fixture(scope="module")
def figures(dinov2):
    units = choose_units("random:4", 1536, LAYER, 0)
    per_image = [u for u in units for _ in SEEDS]
    stats = measure_layer(dinov2, LAYER, load_photos())
    photo_max = [stats.unit_max(u) for u in per_image]
    noise = torch.rand(len(per_image), 3, 224, 224, generator=torch.Generator().manual_seed(0))
    pictures = {"noise": noise}
    for preset in ("naive", "robust"):
        records = optimise(dinov2, O.neuron(LAYER, tuple(per_image)),
                           [s for _ in units for s in SEEDS], preset, steps=STEPS, record_every=0)
        pictures[preset] = list(records)[-1].images
    found = {}
    for name, images in pictures.items():
        robust = metrics.robust_figures(dinov2, LAYER, per_image, images)
        relative = metrics.relative_activation(robust["robust_activation"], photo_max)
        embeddings = metrics.embed(images).reshape(len(units), len(SEEDS), -1)
        found[name] = {"relative": statistics.median(relative),
                       "rank": statistics.median(robust["robust_rank"]),
                       **metrics.specificity(embeddings)}
    return found


def test_robust_activation_is_won_by_the_default_not_by_noise_or_naive(figures):
    robust, naive, noise = figures["robust"], figures["naive"], figures["noise"]
    # Measured at 24 steps: robust 0.89, naive 0.61, noise 0.02 of the photo maximum.
    assert robust["relative"] > 1.25 * naive["relative"], figures
    assert robust["relative"] > noise["relative"] + 0.5, figures
    # Median rank of 1536: robust 104, naive 481, noise 686.
    assert robust["rank"] < min(naive["rank"], noise["rank"]) / 2, figures


def test_specificity_is_won_by_the_default_not_by_noise_or_naive(figures):
    robust, naive, noise = figures["robust"], figures["naive"], figures["noise"]
    # Noise looks alike to the second model whatever the unit: high same-unit similarity...
    assert noise["same_unit"] > robust["same_unit"], figures
    # ...but no specificity; the default's pictures are told apart unit by unit. Measured:
    # robust 0.31, naive 0.12, noise 0.00. (Identification saturates with 4 units: naive's
    # pictures differ per unit too, which is why the margin is the figure that counts.)
    assert robust["specificity"] > max(naive["specificity"], noise["specificity"]) + 0.1, figures
    assert robust["identification"] > noise["identification"] + 0.5, figures
