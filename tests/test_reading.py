"""One unit's pictures read by the judge (vitviz.quality.reading), in the library, the notebook
API and the CLI."""
import json
from types import SimpleNamespace

import pytest
import torch

import vitviz
from vitviz.cli import main
from vitviz.errors import UserError
from vitviz.quality import judge, reading
from vitviz.store.cache import ResultCache

from conftest import VIT_HIDDEN
from test_judge import ranked_layer


def filled(value: float, count: int = 1) -> torch.Tensor:
    return torch.full((count, 3, 8, 8), value)


def test_pictures_that_show_the_units_ends_read_as_well_as_its_photos(bright_judge):
    stats, views = ranked_layer()
    pool = judge.ViewPool(stats, views)
    # Unit 0 prefers high photo numbers: bright pictures up, dark down is what it does.
    right = reading.read_unit(pool, 0, filled(1.0), filled(0.0), count=5)
    for query_set in judge.QUERY_SETS:
        assert right[query_set] == {"pictures": 1.0, "exemplars": 1.0, "together": 1.0}
    assert right["tasks"] == 5 and right["references"] == [5, 5]  # whole and 4 quarters a side
    assert right["noise"] == pytest.approx((0.25 / 5) ** 0.5)
    wrong = reading.read_unit(pool, 0, filled(0.0), filled(1.0), count=5)
    assert wrong["standard"]["pictures"] == wrong["photo_disjoint"]["pictures"] == 0.0
    # Beside the photos, pictures of the opposite ends cancel them: the photos are no longer
    # read alone.
    assert wrong["standard"]["together"] < wrong["standard"]["exemplars"]
    # Accentuated exemplars are read as references of their own, whole.
    mixed = reading.read_unit(pool, 0, filled(0.5), filled(0.5), count=5,
                              accentuated=(filled(1.0, 9), filled(0.0, 9)))
    assert mixed["standard"]["accentuated"] == 1.0 and mixed["standard"]["pictures"] == 0.5
    assert "accentuated" not in right["standard"]
    flat = reading.read_unit(pool, 0, filled(0.5), filled(0.5), count=5)
    assert flat["standard"]["pictures"] == 0.5  # the same picture both ways tells nothing
    # Two seeds a side give the report's nine references: both wholes, then quarters.
    two = reading.read_unit(pool, 0, filled(1.0, 2), filled(0.0, 2), count=5)
    assert two["references"] == [9, 9]
    with pytest.raises(UserError, match="at least one maximising and one minimising"):
        reading.read_unit(pool, 0, filled(1.0, 0), filled(0.0), count=5)


def run_of(unit=3, minimise=False, kind="neuron", model="tiny_vit"):
    spec = {"type": kind, "layer": VIT_HIDDEN, "unit": unit, "tokens": "patch"}
    return SimpleNamespace(config={"objective": spec, "model": model, "minimise": minimise},
                           images=[], metrics={})


@pytest.mark.parametrize("pair, message", [
    ((run_of(), run_of()), "driven down"),
    ((run_of(minimise=True), run_of()), "driven down"),
    ((run_of(3), run_of(4, minimise=True)), "same unit"),
    ((run_of(), run_of(minimise=True, model="tiny_cnn")), "same unit"),
    ((run_of(kind="direction"), run_of(minimise=True)), "one neuron or channel"),
    ((run_of([1, 2]), run_of([1, 2], minimise=True)), "several units"),
])
def test_only_one_unit_driven_up_and_down_is_read(pair, message):
    # Refused before the model, the photos or the judge are touched.
    with pytest.raises(UserError, match=message):
        reading.unit_reading(None, *pair)


def test_judge_unit_draws_both_ways_reads_them_and_keeps_the_reading(tiny_vit, tmp_path,
                                                                    bright_judge, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    found = vitviz.judge_unit(tiny_vit, VIT_HIDDEN, unit=3, steps=4, cache=cache)
    assert found["judge"] == {"name": "efficientnet_lite0", "model": "efficientnet_lite0",
                              "layer": judge.get_judge("efficientnet_lite0").label,
                              "in_model": False}
    for query_set in judge.QUERY_SETS:
        assert set(found[query_set]) == {"pictures", "exemplars", "together", "accentuated"}
        assert all(0.0 <= value <= 1.0 for value in found[query_set].values())
    runs = cache.summaries().values()  # the unit driven up, and driven down
    assert len(runs) == 2 and {run["unit"] for run in runs} == {3}
    # Asked again, both runs and the reading come from the cache: nothing is computed.
    monkeypatch.setattr(reading, "unit_reading", lambda *a, **k: pytest.fail("read again"))
    monkeypatch.setattr("vitviz.store.runs.compute_result",
                        lambda *a, **k: pytest.fail("computed again"))
    assert vitviz.judge_unit(tiny_vit, VIT_HIDDEN, unit=3, steps=4, cache=cache) == found


def test_judge_unit_refuses_an_unknown_judge_before_drawing(tiny_vit, monkeypatch):
    monkeypatch.setattr("vitviz.store.runs.compute_result", lambda *a, **k: pytest.fail("drawn"))
    with pytest.raises(UserError, match="judge 'clip' is unknown"):
        vitviz.judge_unit(tiny_vit, VIT_HIDDEN, unit=3, judge="clip")


def test_the_cli_prints_the_reading_and_writes_it(tmp_path, bright_judge, capsys):
    out = tmp_path / "reading.json"
    assert main(["judge", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "2",
                 "--steps", "3", "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "judge: efficientnet_lite0" in printed and "photo-disjoint: pictures" in printed
    assert "both together" in printed
    assert json.loads(out.read_text())["tasks"] == judge.TASKS
    assert main(["judge", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "999",
                 "--no-cache"]) == 2
    assert "valid values are 0 to 63" in capsys.readouterr().err
