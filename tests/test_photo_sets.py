"""Photos from the user's folder: with $VITVIZ_PHOTOS, dataset examples and photo-relative
figures come from the folder's activation index, say so, and never from a silent mix."""
import numpy as np
import pytest
from test_index import write_images

from vitviz.common.paths import home
from vitviz.data import photo_sets
from vitviz.data.index import build_index
from vitviz.quality.metrics import result_metrics
from vitviz.rendering import objectives
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest, cached_result

from conftest import VIT_HIDDEN


@pytest.fixture
def folder(tmp_path, monkeypatch):
    photos = tmp_path / "my photos"
    write_images(photos, 0, 9)
    monkeypatch.setenv(photo_sets.PHOTOS_ENV, str(photos))
    return photos


def test_a_folder_without_an_index_says_which_command_builds_it(tiny_vit, folder):
    with pytest.raises(photo_sets.IndexMissing) as error:
        photo_sets.examples_for(tiny_vit, VIT_HIDDEN)
    assert f"python -m vitviz index --model tiny_vit --layers {VIT_HIDDEN} --photos" in str(error.value)


def test_examples_and_the_photo_maximum_come_from_the_folders_index(tiny_vit, folder):
    index, _ = build_index(tiny_vit, [VIT_HIDDEN, "encoder.layers.encoder_layer_0.mlp.1"],
                           folder, home() / "indexes", k=4, batch_size=4)
    examples = photo_sets.examples_for(tiny_vit, VIT_HIDDEN)
    assert examples.label == "my photos (9 images, indexed)"
    for unit in (0, 5, 63):
        assert examples.unit_max(unit) == pytest.approx(index.summary(VIT_HIDDEN, unit)["max"])
        top = examples.top(unit, 3)
        assert [e.photo for e in top["photo"]] == [
            p.relative_to(folder).as_posix() for p, _ in index.top(VIT_HIDDEN, unit, 3)]
        assert len(top["patch"]) == 3 and top["patch"][0].box[2] > top["patch"][0].box[0]
        assert examples.image(top["photo"][0].photo).size[0] > 0
    request = RunRequest("tiny_vit", objectives.neuron(VIT_HIDDEN, (5, 9)).spec(), (0, 1),
                         overrides={"steps": 3})
    # The pictures read no photos, so the folder is not in their key; the figures name it.
    assert "photo_folder" not in request.config()
    accentuated = RunRequest("tiny_vit", objectives.neuron(VIT_HIDDEN, 5).spec(), accentuate=0)
    assert accentuated.config()["photo_folder"] == str(folder)
    result, _ = cached_result(request, None, lambda name: tiny_vit)
    figures = result_metrics(tiny_vit, result)
    assert figures["photo_set"] == examples.label and figures["photos"] == 9
    assert figures["photo_set_id"] == f"folder:{folder}"
    assert figures["unit_max_over_photos"] == pytest.approx([examples.unit_max(5),
                                                             examples.unit_max(9)])


def test_a_run_keeps_its_pictures_until_the_folder_is_indexed(tiny_vit, folder, tmp_path):
    cache = ResultCache(tmp_path / "cache")
    request = RunRequest("tiny_vit", objectives.neuron(VIT_HIDDEN, 5).spec(), (0,),
                         overrides={"steps": 3})
    first, _ = cached_result(request, cache, lambda name: tiny_vit, measure=True)
    assert "vitviz index" in first.metrics["figures_unavailable"]
    assert cache.get(request.key()) is not None, "the pictures were thrown away"
    build_index(tiny_vit, [VIT_HIDDEN], folder, home() / "indexes", k=4, batch_size=4)
    again, cached = cached_result(request, cache, lambda name: tiny_vit, measure=True)
    assert cached and "figures_unavailable" not in again.metrics
    assert again.metrics["photo_set"].startswith("my photos")
    assert np.array_equal(again.images[0], first.images[0])


def test_the_judge_draws_its_queries_and_exemplars_from_the_folders_index(tiny_vit, folder,
                                                                            monkeypatch):
    import torch.nn.functional as F
    from test_index import brute_force

    from vitviz.quality import judge

    write_images(folder, 9, 51)  # 60 images: 20 tasks a side and 9 references a side
    build_index(tiny_vit, [VIT_HIDDEN], folder, home() / "indexes", k=60, batch_size=8)
    examples = photo_sets.examples_for(tiny_vit, VIT_HIDDEN)
    # The judge's own model is not what this test is about: its features are each image's
    # mean colour, and the images it was asked to embed are counted.
    embedded = []

    def fake_embed(images, judge_name):
        embedded.append(len(images))
        return F.normalize(images.mean(dim=(2, 3)), dim=1)

    monkeypatch.setattr(judge, "embed", fake_embed)
    monkeypatch.setattr(judge, "_feature_model", lambda name: tiny_vit)
    pool = judge.pool_for(examples, "efficientnet_lite0")
    assert isinstance(pool, judge.IndexPool)

    paths, _, drive, *_ = brute_force(tiny_vit, folder)
    ranked = [paths[i] for i in np.argsort(-drive[:, 5], kind="stable")]
    task = judge.tasks(pool, 5, "photo_disjoint")
    assert task.high == ranked[:20] and task.low == ranked[::-1][:20]
    assert judge.natural_references(pool, 5, task) == (ranked[20:29], ranked[::-1][20:29])
    figures = judge.mis(pool, [5, 9])
    assert 0.0 <= figures["exemplars"] <= 1.0 and figures["tasks_per_unit"] == 20
    assert sum(embedded) <= 60, "each image is read and embedded once, when first needed"

    from vitviz.surveys.report import compare
    found = compare(tiny_vit, {VIT_HIDDEN: [5, 9]}, {"naive": ("naive", {"steps": 2})}, [0, 1],
                    None, "efficientnet_lite0")
    assert found.layers[VIT_HIDDEN]["photo_set"] == examples.label
    assert isinstance(found.layers[VIT_HIDDEN]["pool"], judge.IndexPool)
    for query_set in judge.QUERY_SETS:
        assert {"pictures", "pictures_control"} <= set(found.figures["naive"]["judge"][query_set])
    assert found.minimised["naive"][VIT_HIDDEN].shape == found.pictures["naive"][VIT_HIDDEN].shape
