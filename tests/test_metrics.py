import torch
import torch.nn.functional as F

from vitviz import metrics, objectives as O
from vitviz.data import load_photos
from vitviz.examples import measure_layer
from vitviz.runs import RunRequest, execute

from conftest import VIT_HIDDEN


def test_consistency_rewards_unit_specific_agreement_not_sameness():
    distinct = torch.eye(3)[:, None, :].repeat(1, 2, 1)  # 3 units x 2 seeds, one direction per unit
    figures = metrics.consistency(distinct)
    assert figures["same_unit"] == 1.0 and figures["different_unit"] == 0.0
    assert figures["identification"] == 1.0 and figures["chance"] == 1 / 3
    # Noise-like: every image looks the same to the feature model, whatever the unit.
    alike = F.normalize(torch.ones(3, 2, 4), dim=2)
    noisy = metrics.consistency(alike)
    assert noisy["same_unit"] > 0.99 and abs(noisy["gap"]) < 1e-6 and noisy["identification"] == 0.0


def test_unit_rank_counts_units_that_respond_more(tiny_vit):
    images = torch.rand(2, 3, 32, 32)
    from vitviz.hooks import run_and_capture

    act = run_and_capture(tiny_vit.module, tiny_vit.normalise(images), [VIT_HIDDEN])[VIT_HIDDEN]
    values = act[:, 1:].mean(dim=1)
    strongest, weakest = int(values[0].argmax()), int(values[1].argmin())
    assert metrics.unit_ranks(tiny_vit, VIT_HIDDEN, [strongest, weakest], images) == [1, 64]


def test_dataset_examples_rank_photos_crops_and_patches(tiny_vit):
    photos = load_photos(["sklearn"])
    stats = measure_layer(tiny_vit, VIT_HIDDEN, photos, batch_size=7)
    assert stats.values.shape == (2 * 10, 64)  # each photo, plus its 3x3 crops
    assert stats.patch_values.shape == (2, 16, 64)
    top = stats.top(5, k=3)
    for kind in ("photo", "crop", "patch"):
        values = [example.activation for example in top[kind]]
        assert values == sorted(values, reverse=True) and top[kind][0].kind == kind
        assert all(0 <= v <= 1 for example in top[kind] for v in example.box)
    assert stats.unit_max(5) == max(top["photo"][0].activation, top["crop"][0].activation)


def test_result_metrics_relate_activation_to_photos(tiny_vit):
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, (3, 3, 8, 8)).spec(), (0, 1, 0, 1),
                         "naive", {"steps": 6})
    result = execute(request, tiny_vit)
    figures = metrics.result_metrics(tiny_vit, result)
    assert figures["relative_activation"][2] == figures["activation"][2] / figures["unit_max_over_photos"][2]
    assert figures["unit_max_over_photos"][0] == figures["unit_max_over_photos"][1]
    assert all(1 <= rank <= 64 for rank in figures["rank"])
    assert figures["consistency"]["units"] == 2 and figures["consistency"]["seeds"] == 2
    assert len(figures["similarity"]) == 4
