"""Dataset examples and quality figures in the dashboard, on the tiny random ViT."""
from conftest import VIT_HIDDEN
from test_app import button, calls, dashboard_env, errors, open_page  # noqa: F401

EXAMPLES = "pages/5_Dataset_examples.py"


def test_examples_show_photos_crops_patches_and_the_visualisation(calls):
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=5, steps=6)
    assert errors(at) == ""
    subheaders = [s.value for s in at.subheader]
    assert {"Whole photos", "Crops (half-size windows)"} <= set(subheaders)
    assert any(s.startswith("Patches") for s in subheaders)
    assert len(at.image) == 3 * 6  # top 6 photos, crops and patches
    assert not calls["requests"]  # nothing is optimised until asked
    button(at, "Visualise").click().run()
    assert errors(at) == "" and len(calls["requests"]) == 1 and len(at.image) == 3 * 6 + 1
    labels = [m.label for m in at.metric]
    assert "Activation / photo max" in labels and "Max over photos and crops" in labels


def test_examples_unit_out_of_range_is_a_message(calls):
    at = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=640, steps=6)
    assert "valid values are 0 to 63" in errors(at)


def test_compare_measures_quality_figures_once_and_keeps_them(calls):
    at = open_page("pages/2_Compare_seeds.py", layer=VIT_HIDDEN, unit=3, seeds=2,
                   preset="robust", preset2="naive", steps=6)
    button(at, "Run 2 seeds").click().run()
    assert errors(at) == "" and not at.dataframe
    button(at, "Measure against the photo set").click().run()
    assert errors(at) == ""
    (table,) = at.dataframe
    assert list(table.value["method"]) == ["robust", "naive"]
    assert table.value["seed agreement (MobileNetV2)"].between(-1, 1).all()
    again = open_page("pages/2_Compare_seeds.py", **at.query_params)
    assert len(again.dataframe) == 1 and not [b for b in again.button if b.label.startswith("Measure")]
