"""Dataset examples and quality figures in the dashboard, on the tiny random ViT."""
from collections import OrderedDict

import pytest

from vitviz.data import photo_sets
from vitviz.quality import metrics, reading

from conftest import VIT_HIDDEN
from test_app import button, button_labels, calls, dashboard_env, errors, open_page  # noqa: F401

EXAMPLES = "pages/Dataset_examples.py"


def test_examples_show_photos_crops_patches_and_the_visualisation(calls, monkeypatch):
    monkeypatch.setattr(photo_sets, "_LAYER_CACHE", OrderedDict())
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    assert errors(at) == "" and not at.image
    assert not photo_sets._LAYER_CACHE  # opening a link measures nothing
    button(at, "Find the examples").click().run()
    assert errors(at) == ""
    subheaders = [s.value for s in at.subheader]
    assert {"Whole photos", "Crops (half-size windows)"} <= set(subheaders)
    assert any(s.startswith("Patches") for s in subheaders)
    assert len(at.image) == 3 * 6  # top 6 photos, crops and patches
    assert not calls["requests"]  # nothing is optimised until asked
    button(at, "Visualise").click().run()
    assert errors(at) == "" and len(calls["requests"]) == 1 and len(at.image) == 3 * 6 + 1
    labels = [m.label for m in at.metric]
    assert "Robust act. / photo max" in labels and "Max over the photo set" in labels
    assert "Activation / photo max" not in labels  # raw activation rewards noise
    # The robust figure was stored with the run: a reload shows it without a forward pass.
    calls["forwards"] = 0
    again = open_page(EXAMPLES, **at.query_params)
    shown = {m.label: m.value for m in again.metric}
    assert errors(again) == "" and calls["forwards"] == 0
    assert shown["Robust act. / photo max"] == {m.label: m.value for m in at.metric}[
        "Robust act. / photo max"]


def test_examples_unit_out_of_range_is_a_message(calls):
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=640, steps=6)
    assert "valid values are 0 to 63" in errors(at)


def test_compare_measures_quality_figures_once_and_keeps_them(calls):
    at = open_page("pages/Compare_seeds.py", layer=VIT_HIDDEN, unit=3, seeds=2,
                   preset="robust", preset2="naive", steps=6)
    button(at, "Run 2 seeds").click().run()
    assert errors(at) == "" and not at.dataframe
    button(at, "Measure against the photo set").click().run()
    assert errors(at) == ""
    (table,) = at.dataframe
    assert list(table.value["method"]) == ["robust", "naive"]
    (rank,) = [c for c in table.value.columns if c.startswith("robust rank of ")]
    units = int(rank.removeprefix("robust rank of "))
    assert table.value[rank].between(1, units).all()
    # Only figures noise cannot win: no raw activation, no similarity of seeds to each other.
    assert not [c for c in table.value.columns
                if "agreement" in c or c.endswith("activation / photo max")]
    headline = {m.label: m.value for m in at.metric}
    for preset, robust in zip(table.value["method"], table.value["shifted & zoomed / photo max"]):
        assert headline[f"Robust activation / photo max · {preset}"] == f"{robust:.2f}×"
    again = open_page("pages/Compare_seeds.py", **at.query_params)
    assert len(again.dataframe) == 1 and not [b for b in again.button if b.label.startswith("Measure")]


def test_layer_measurements_are_bounded_and_never_confused_between_models(tiny_vit, monkeypatch):
    monkeypatch.setattr(photo_sets, "_LAYER_CACHE", OrderedDict())
    first = photo_sets.photo_statistics(tiny_vit, VIT_HIDDEN)
    monkeypatch.setattr(photo_sets, "LAYER_CACHE_BYTES", first.nbytes() + 1)
    assert photo_sets.photo_statistics(tiny_vit, VIT_HIDDEN) is first  # kept while it fits
    photo_sets.photo_statistics(tiny_vit, "encoder.layers.encoder_layer_0.mlp.1")
    assert len(photo_sets._LAYER_CACHE) == 1  # the older layer went to make room
    assert not photo_sets.has_photo_statistics(tiny_vit, VIT_HIDDEN)


def test_examples_come_from_the_operators_folder_once_it_is_indexed(calls, tmp_path,
                                                                   monkeypatch):
    from test_index import write_images

    from vitviz.common.paths import home
    from vitviz.data.index import build_index
    from vitviz.data.photo_sets import PHOTOS_ENV
    from vitviz.models.registry import load_model

    folder = tmp_path / "field photos"
    write_images(folder, 0, 8)
    monkeypatch.setenv(PHOTOS_ENV, str(folder))
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    assert errors(at) == "" and not at.image
    assert "python -m vitviz index --model tiny_vit" in "\n".join(i.value for i in at.info)
    build_index(load_model("tiny_vit", "cpu"), [VIT_HIDDEN], folder, home() / "indexes", k=6,
                batch_size=4)
    calls["forwards"] = 0
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    assert errors(at) == "" and not button_labels(at, "Find the examples")
    assert calls["forwards"] == 0, "reading an index needs no forward pass"
    subheaders = [s.value for s in at.subheader]
    assert "Whole photos" in subheaders and any(s.startswith("Patches") for s in subheaders)
    assert len(at.image) == 6 + 6
    assert any("field photos (8 images, indexed)" in c.value for c in at.caption)


def test_a_run_without_figures_says_why_on_its_page(calls, tmp_path):
    # A run made by the CLI while $VITVIZ_PHOTOS named a folder with no index yet.
    from vitviz.store.cache import ResultCache

    from test_app import OPTIMISE, run_then_reopen

    at, _ = run_then_reopen(OPTIMISE, "Run", calls, layer=VIT_HIDDEN, unit=5, steps=4)
    (request,) = calls["requests"]
    cache = ResultCache(tmp_path / "cache")
    result = cache.get(request.key())
    result.metrics["figures_unavailable"] = "no index of /photos yet: python -m vitviz index ..."
    cache.put(request.key(), result)
    reopened = open_page(OPTIMISE, **at.query_params)
    assert errors(reopened) == ""
    assert any("No quality figures yet: no index of /photos" in i.value for i in reopened.info)


def test_the_pages_show_the_figures_of_metrics_quality_figures(calls, monkeypatch):
    # A marked answer from the one function that computes the quality figures: the Dataset
    # examples and Compare pages show exactly it, so they compute no figure of their own.
    from ui import display

    monkeypatch.setattr(photo_sets, "_LAYER_CACHE", OrderedDict())
    real, answers = metrics.quality_figures, []

    def marked(*args, **kwargs):
        figures = real(*args, **kwargs)
        count = len(figures["relative_robust_activation"])
        figures["relative_robust_activation"] = [7.0 + len(answers) + i for i in range(count)]
        figures["relative_plain_colour"] = [0.25] * count
        answers.append(figures)
        return figures

    monkeypatch.setattr(metrics, "quality_figures", marked)
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    button(at, "Find the examples").click().run()
    button(at, "Visualise").click().run()
    assert errors(at) == "" and len(answers) == 1
    shown = {m.label: m.value for m in at.metric}
    assert shown["Robust act. / photo max"] == "7.00×"
    assert shown["Plain colour / photo max"] == "0.25×"
    assert "seed 0 · 7.00× photo max, shifted & zoomed · a plain colour 0.25×" in str(
        at.image[0].proto)

    at = open_page("pages/Compare_seeds.py", layer=VIT_HIDDEN, unit=3, seeds=2,
                   preset="robust", preset2="naive", steps=6)
    button(at, "Run 2 seeds").click().run()
    button(at, "Measure against the photo set").click().run()
    assert errors(at) == "" and len(answers) == 3
    headline = {m.label: m.value for m in at.metric}
    (table,) = at.dataframe
    (rank,) = [c for c in table.value.columns if c.startswith("robust rank of ")]
    for row, (preset, figures) in enumerate(zip(["robust", "naive"], answers[1:])):
        relative = display.median(figures["relative_robust_activation"])  # 8.5, then 9.5
        assert headline[f"Robust activation / photo max · {preset}"] == display.times(relative)
        assert table.value["shifted & zoomed / photo max"][row] == relative
        assert table.value[rank][row] == display.median(figures["robust_rank"])


def test_the_examples_page_asks_an_independent_judge_and_keeps_its_reading(calls, bright_judge,
                                                                          monkeypatch):
    monkeypatch.setattr(photo_sets, "_LAYER_CACHE", OrderedDict())
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    button(at, "Find the examples").click().run()
    button(at, "Visualise").click().run()
    assert errors(at) == "" and not at.dataframe  # read on request only
    pictures = len(at.image)
    button(at, "Ask an independent judge").click().run()
    assert errors(at) == ""
    # The unit driven down was drawn for it, with the same settings but the direction.
    up, down = calls["requests"]
    assert (up.minimise, down.minimise) == (False, True) and up.objective == down.objective
    assert len(at.image) == pictures + 2  # the unit driven up and down, beside the reading
    (table,) = at.dataframe
    assert list(table.value["references"]) == ["its pictures", "its photos", "both together",
                                               "its photos mixed with the pictures"]
    assert list(table.value.columns[1:]) == ["standard", "photo-disjoint"]
    (said,) = [c.value for c in at.caption if "Judge: efficientnet_lite0" in c.value]
    # One seed: its picture whole and its 4 quarters a side, which the caption must say.
    assert "5 references driven up and 5 driven down" in said
    # A link shows the stored reading: nothing drawn, measured or judged again.
    monkeypatch.setattr(reading, "unit_reading", lambda *a, **k: pytest.fail("judged again"))
    again = open_page(EXAMPLES, **at.query_params)
    assert errors(again) == "" and len(calls["requests"]) == 2
    assert again.dataframe[0].value.equals(table.value)


def reading_tables(at) -> list:
    return [d.value for d in at.dataframe if "references" in d.value.columns]


def test_the_optimise_page_reads_a_unit_driven_down_with_its_twin_driven_up(calls, bright_judge):
    at = open_page("pages/Optimise.py", layer=VIT_HIDDEN, unit=4, steps=5, direction="min")
    button(at, "Run").click().run()
    assert errors(at) == "" and not reading_tables(at)
    button(at, "Ask an independent judge").click().run()
    assert errors(at) == ""
    down, up = calls["requests"]  # the page's own run, then its twin drawn for the judge
    assert down.minimise and not up.minimise and up.preset == down.preset
    (table,) = reading_tables(at)
    assert list(table.columns[1:]) == ["standard", "photo-disjoint"]
    # Stored with the twin driven up: the page driving the unit up shows it, nothing redrawn.
    again = open_page("pages/Optimise.py", layer=VIT_HIDDEN, unit=4, steps=5)
    assert errors(again) == "" and len(calls["requests"]) == 2
    assert reading_tables(again)[0].equals(table)
