"""The atlas: batched units land in the cache as the single runs the pages ask for."""
import html
import shutil
import subprocess
import sys

import numpy as np
import pytest

import vitviz.surveys.atlas
from ui.settings import accentuated_request, examples_request
from vitviz.data import photo_sets
from vitviz.errors import UserError
from vitviz.quality.metrics import result_metrics
from vitviz.store.cache import ResultCache
from vitviz.store.runs import compute_result, default_record_every
from vitviz.surveys.atlas import run_atlas, unit_request

from conftest import VIT_HIDDEN

STEPS = 6


def test_each_unit_is_cached_as_the_single_run_a_page_asks_for(tiny_vit, tmp_path):
    cache = ResultCache(tmp_path / "cache")
    done = dict(run_atlas(tiny_vit, VIT_HIDDEN, [3, 9, 17, 40, 63], cache, steps=STEPS,
                          batch_units=2))
    assert sorted(done) == [3, 9, 17, 40, 63]
    settings = {"model": "tiny_vit", "layer": VIT_HIDDEN, "kind": "neuron", "unit": 17,
                "tokens": "patch", "seed": 0, "steps": STEPS,
                "size": tiny_vit.preprocessing.size * 2}
    page = examples_request(settings, tiny_vit.preprocessing.size)
    assert page.key() == unit_request("tiny_vit", VIT_HIDDEN, 17, steps=STEPS).key()
    stored = cache.get(page.key())
    solo = compute_result(page, tiny_vit)
    assert np.abs(stored.images[0].astype(int) - solo.images[0].astype(int)).max() <= 1
    assert np.allclose(stored.activation, solo.activation, atol=1e-4)
    assert stored.config == solo.config and sorted(stored.checkpoints) == sorted(solo.checkpoints)
    # The unit's page shows these figures without measuring again: the same as for the solo run.
    figures = result_metrics(tiny_vit, solo)
    assert set(stored.metrics) == set(figures) and "relative_robust_activation" in figures
    for name, value in figures.items():
        if isinstance(value, str):
            assert stored.metrics[name] == value, name
        else:
            assert np.allclose(stored.metrics[name], value, rtol=1e-2, atol=1e-2), name


@pytest.mark.parametrize("direction", ["max", "min"])
def test_accentuated_exemplars_run_several_units_a_batch_as_the_pages_ask_for_them(
        tiny_vit, tmp_path, direction):
    """The Atlas page's accentuated exemplars: each unit's from its own extreme photo view,
    stored under the key the Optimise and Dataset examples pages look up."""
    from vitviz.data.photo_sets import photo_statistics

    cache = ResultCache(tmp_path / "cache")
    units, minimise = [4, 21, 50], direction == "min"
    done = dict(run_atlas(tiny_vit, VIT_HIDDEN, units, cache, steps=STEPS, batch_units=3,
                          minimise=minimise, accentuate=0))
    stats = photo_statistics(tiny_vit, VIT_HIDDEN)
    for unit in units:
        page = accentuated_request({"model": "tiny_vit", "layer": VIT_HIDDEN, "kind": "neuron",
                                    "unit": unit, "tokens": "patch", "seed": 0, "steps": STEPS,
                                    "size": tiny_vit.preprocessing.size * 2,
                                    "direction": direction}, tiny_vit.preprocessing.size)
        stored = cache.get(page.key())
        assert stored is not None and stored.config == done[unit].config == page.config()
        source, view = (stored.metrics["accentuated_from"][0],
                        stats.extreme_views(unit, 1, bottom=minimise)[0])
        assert (source["photo"], tuple(source["box"])) == (view.photo, tuple(view.box))
        alone = compute_result(page, tiny_vit)
        assert np.abs(stored.images[0].astype(int) - alone.images[0].astype(int)).max() <= 2


def test_a_unit_the_atlas_made_is_served_to_run_and_visualise_without_computing(tiny_vit,
                                                                               tmp_path,
                                                                               monkeypatch,
                                                                               capsys):
    """One recording default for every entry point: the CLI used to keep images every 16 steps
    and the atlas every steps // 8, so `vitviz run` computed the atlas's unit again."""
    import vitviz
    import vitviz.store.runs
    from vitviz.cli import main

    cache = ResultCache(tmp_path / "cache")
    assert [unit for unit, _ in run_atlas(tiny_vit, VIT_HIDDEN, [5], cache, steps=STEPS)] == [5]

    def computed(*_args, **_kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(vitviz.store.runs, "compute_result", computed)
    result = vitviz.visualise("tiny_vit", VIT_HIDDEN, unit=5, steps=STEPS, cache=cache)
    assert result.config["record_every"] == default_record_every(STEPS)
    assert main(["run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "5", "--steps",
                 str(STEPS), "--cache", str(tmp_path / "cache"), "--out",
                 str(tmp_path / "out")]) == 0
    assert "served from the result cache" in capsys.readouterr().err


def test_a_rerun_resumes_where_an_interrupted_atlas_stopped(tiny_vit, tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")

    def stop_after_first_batch(done, total, seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(run_atlas(tiny_vit, VIT_HIDDEN, range(5), cache, steps=STEPS, batch_units=2,
                       progress=stop_after_first_batch))
    batches = []
    real = vitviz.surveys.atlas.compute_result
    monkeypatch.setattr(vitviz.surveys.atlas, "compute_result",
                        lambda request, model, *rest: batches.append(request)
                        or real(request, model, *rest))
    resumed = [unit for unit, _ in run_atlas(tiny_vit, VIT_HIDDEN, range(5), cache, steps=STEPS,
                                              batch_units=2)]
    # The first batch is reported once the second has optimised, and the second, being
    # written when the stop came, is kept: a stop loses at most what was still optimising.
    assert resumed == [4] and len(batches) == 1
    assert list(run_atlas(tiny_vit, VIT_HIDDEN, range(5), cache, steps=STEPS)) == []


def test_the_cli_runs_an_atlas_and_checks_the_unit_range(tmp_path):
    args = [sys.executable, "-m", "vitviz", "atlas", "--model", "tiny_vit", "--layer", VIT_HIDDEN,
            "--steps", "3", "--batch-units", "auto", "--cache", str(tmp_path / "cache")]
    done = subprocess.run(args + ["--units", "0-5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "6 units of" in done.stdout and "6 computed, 0 already in the cache" in done.stdout
    again = subprocess.run(args + ["--units", "0-5"], capture_output=True, text=True, timeout=300)
    assert "0 computed, 6 already in the cache" in again.stdout
    wrong = subprocess.run(args + ["--units", "60-70"], capture_output=True, text=True,
                           timeout=300)
    assert wrong.returncode == 2 and "valid units are 0 to 63" in wrong.stderr


def test_the_exported_site_has_a_page_per_computed_unit_and_lists_the_missing(tiny_vit,
                                                                             tmp_path):
    from vitviz.surveys.atlas_site import export_atlas

    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(tiny_vit, VIT_HIDDEN, [2, 5, 7], cache, steps=STEPS, batch_units=3))
    out = tmp_path / "site"
    counts = export_atlas("tiny_vit", VIT_HIDDEN, range(0, 8), cache, out, steps=STEPS)
    assert counts == {"units": 8, "computed": 3, "missing": 5}
    assert sorted(p.name for p in (out / "unit").glob("*.html")) == ["2.html", "5.html", "7.html"]
    index = (out / "index.html").read_text()
    assert '"unit": 0, "computed": false' in index and '"unit": 5, "computed": true' in index
    page = (out / "unit" / "5.html").read_text()
    assert "<polyline" in page and "robust activation" in page and "../img/5.png" in page
    assert html.escape(photo_sets.examples_for(tiny_vit, VIT_HIDDEN).label) in page
    stored = cache.get(unit_request("tiny_vit", VIT_HIDDEN, 5, steps=STEPS).key())
    exported = json_of(out / "unit" / "5.json")
    assert exported["config"] == stored.config and exported["metrics"] == stored.metrics
    plain = stored.metrics["relative_plain_colour"][0]
    assert f"a plain colour of its strongest photos (x the unit&#x27;s photo maximum)</th><td>{plain:.3g}x" in page
    for step in stored.checkpoints:
        assert (out / "steps" / f"5_{step}.png").is_file()
    assert not list(out.rglob(".*")), "a temporary file was left behind"


def test_the_site_is_written_one_result_at_a_time_and_keeps_links_to_a_unit_lost_meanwhile(
        tiny_vit, tmp_path, monkeypatch):
    """A whole layer's results do not fit in memory at once: the export lets each go before
    reading the next. A unit that leaves the cache between the two looks gets a page that
    says so, so its neighbours' links are not broken."""
    import gc
    import weakref

    from vitviz.surveys.atlas_site import export_atlas

    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(tiny_vit, VIT_HIDDEN, [1, 2, 3, 4], cache, steps=STEPS, batch_units=4))
    lost = unit_request("tiny_vit", VIT_HIDDEN, 3, steps=STEPS).key()
    read, alive_at_read = [], []
    get = ResultCache.get

    def get_and_count(self, key):
        gc.collect()
        alive_at_read.append(sum(ref() is not None for ref in read))
        if key == lost:
            self.delete(key)
        result = get(self, key)
        if result is not None:
            read.append(weakref.ref(result))
        return result

    monkeypatch.setattr(ResultCache, "get", get_and_count)
    out = tmp_path / "site"
    told = []
    counts = export_atlas("tiny_vit", VIT_HIDDEN, [0, 1, 2, 3, 4], cache, out, steps=STEPS,
                          progress=told.append)
    assert sum(told) == 5, "each unit, written, lost or never computed, counts once"
    assert len(alive_at_read) == 4 and max(alive_at_read) <= 1  # the one being replaced
    assert counts == {"units": 5, "computed": 3, "missing": 2}
    assert "'3.html'" in (out / "unit" / "2.html").read_text()
    assert "Not in the result cache" in (out / "unit" / "3.html").read_text()
    assert '"unit": 3, "computed": false' in (out / "index.html").read_text()


def json_of(path):
    import json

    return json.loads(path.read_text())


def test_the_cli_exports_a_site_of_a_range_of_units(tmp_path):
    base = [sys.executable, "-m", "vitviz"]
    common = ["--model", "tiny_vit", "--layer", VIT_HIDDEN, "--steps", "3",
              "--cache", str(tmp_path / "cache")]
    subprocess.run(base + ["atlas", *common, "--units", "0-3"], check=True, capture_output=True,
                   timeout=300)
    done = subprocess.run(base + ["export-atlas", *common, "--units", "0-5", "--out",
                                  str(tmp_path / "site")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 of 6 units of 1 layer (2 not in the cache" in done.stdout
    assert (tmp_path / "site" / "unit" / "3.html").is_file()


def test_the_ray_engine_stores_the_same_pictures_as_the_local_one(tiny_vit, tmp_path):
    pytest.importorskip("ray.data", reason="Ray is an optional extra (pip install 'ray[data]')")
    import ray

    units = [1, 4, 9, 16, 25]
    local = dict(run_atlas(tiny_vit, VIT_HIDDEN, units, ResultCache(tmp_path / "local"),
                           steps=STEPS, batch_units=2))
    cache = ResultCache(tmp_path / "ray")
    try:
        distributed = dict(run_atlas(tiny_vit, VIT_HIDDEN, units, cache, steps=STEPS,
                                     batch_units=2, engine="ray", workers=2))
    finally:
        ray.shutdown()
    assert sorted(distributed) == units
    for unit in units:
        ours, theirs = local[unit], cache.get(unit_request("tiny_vit", VIT_HIDDEN, unit,
                                                           steps=STEPS).key())
        assert theirs.config == ours.config
        assert np.abs(theirs.images[0].astype(int) - ours.images[0].astype(int)).max() <= 1
        # Where the CPU computes bf16 (the default there), a sum's rounding follows the thread
        # count, which a Ray worker sets for itself: equal to bf16's precision, not fp32's.
        close = 1e-4 if ours.precision == "fp32" else 1e-2
        assert np.allclose(theirs.activation, ours.activation, atol=close, rtol=close)
        assert np.allclose(theirs.metrics["relative_robust_activation"],
                           ours.metrics["relative_robust_activation"], atol=10 * close)


def test_auto_batches_grow_with_free_memory_and_count_the_bytes_a_unit_keeps(tiny_vit,
                                                                            monkeypatch):
    import vitviz.surveys.atlas as atlas
    from vitviz.rendering.batching import saved_bytes_per_item
    from vitviz.rendering.objectives import neuron

    per_unit = saved_bytes_per_item(tiny_vit, neuron(VIT_HIDDEN, 3), "robust")
    # At least the four augmented copies' input images, as float32, are kept for backward.
    assert per_unit > 4 * 3 * 32 * 32 * 4
    sizes = []
    for free in (per_unit, 6 * per_unit, 1000 * per_unit):
        monkeypatch.setattr(atlas, "free_bytes", lambda device, free=free: free)
        sizes.append(atlas.auto_batch_units(tiny_vit, VIT_HIDDEN, 3))
    assert sizes == [1, 3, atlas.AUTO_CAP]
    monkeypatch.setattr(atlas, "free_bytes", lambda device: 10 * per_unit)
    assert atlas.auto_batch_units(tiny_vit, VIT_HIDDEN, 3, sharing=2) == 2


def test_the_cli_refuses_a_batch_size_that_is_not_a_count_or_auto(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vitviz", "atlas", "--model", "tiny_vit",
                           "--layer", VIT_HIDDEN, "--units", "0-3", "--batch-units", "0",
                           "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--batch-units must be a whole number from 1, or auto" \
        in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_unit_without_a_relative_figure_is_listed_without_one(tiny_vit, tmp_path):
    import json

    from vitviz.surveys.atlas_site import export_atlas

    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(tiny_vit, VIT_HIDDEN, [2, 5], cache, steps=STEPS, batch_units=2))
    key = unit_request("tiny_vit", VIT_HIDDEN, 5, steps=STEPS).key()
    stored = cache.get(key)
    stored.metrics["relative_robust_activation"] = [float("nan")]  # no photo drives it above 0
    cache.put(key, stored)
    export_atlas("tiny_vit", VIT_HIDDEN, [2, 5], cache, tmp_path / "site", steps=STEPS)
    page = (tmp_path / "site" / "index.html").read_text()
    rows = json.loads(page.split("const DATA = ")[1].split(";")[0])
    assert [row["robust"] is None for row in rows] == [False, True]


HIDDEN_LAYERS = ["encoder.layers.encoder_layer_0.mlp.1", VIT_HIDDEN]


def test_layers_are_named_by_role_pattern_or_name_in_forward_order(tiny_vit):
    from vitviz.models.layers import UnknownLayer, match_layers

    assert match_layers(tiny_vit, ["mlp_hidden"]) == HIDDEN_LAYERS
    assert match_layers(tiny_vit, ["encoder.layers.*.mlp.1"]) == HIDDEN_LAYERS
    assert match_layers(tiny_vit, [VIT_HIDDEN, "mlp_hidden"]) == HIDDEN_LAYERS  # each once
    blocks = match_layers(tiny_vit, ["block_output"])
    assert blocks == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    with pytest.raises(UnknownLayer, match="matches no layer of tiny_vit.*Closest names"):
        match_layers(tiny_vit, ["encoder.layers.*.mlp.9"])
    with pytest.raises(UnknownLayer, match="Closest matches"):
        match_layers(tiny_vit, ["encoder.layers.encoder_layer_1.mlp1"])


def test_a_model_wide_atlas_resumes_after_a_kill_with_one_progress_for_the_job(tiny_vit,
                                                                               tmp_path):
    from vitviz.surveys.atlas import run_layers

    cache = ResultCache(tmp_path / "cache")
    plan = {layer: [0, 1, 2] for layer in HIDDEN_LAYERS}
    seen = []

    def killed_in_the_second_layer(done, total, seconds):
        seen.append((done, total))
        if done == 3:  # the first layer stored, the second layer's first batch written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(run_layers(tiny_vit, plan, cache, steps=STEPS, batch_units=2,
                        progress=killed_in_the_second_layer))
    assert seen == [(2, 6), (3, 6)]  # one count over both layers
    seen.clear()
    rest = [(layer, unit) for layer, unit, _ in run_layers(
        tiny_vit, plan, cache, steps=STEPS, batch_units=2,
        progress=lambda done, total, _: seen.append((done, total)))]
    assert rest == [(VIT_HIDDEN, 2)] and seen == [(1, 1)]
    for layer in HIDDEN_LAYERS:
        for unit in plan[layer]:
            assert unit_request("tiny_vit", layer, unit, steps=STEPS).key() in cache


def test_the_cli_runs_and_exports_every_mlp_hidden_layer_with_links_between_them(tmp_path,
                                                                                capsys):
    from vitviz.cli import main

    common = ["--model", "tiny_vit", "--layer", "mlp_hidden", "--steps", "3", "--units", "0-1",
              "--cache", str(tmp_path / "cache")]
    assert main(["atlas", *common, "--batch-units", "4"]) == 0
    out = capsys.readouterr().out
    for layer in HIDDEN_LAYERS:
        assert f"2 units of {layer}: 2 computed, 0 already in the cache" in out
    site = tmp_path / "site"
    assert main(["export-atlas", *common, "--out", str(site)]) == 0
    assert "4 of 4 units of 2 layers" in capsys.readouterr().out
    index = (site / "index.html").read_text()
    for layer in HIDDEN_LAYERS:
        assert f"href='layers/{layer}/index.html'" in index
        assert (site / "layers" / layer / "unit" / "1.html").is_file()
    first = (site / "layers" / HIDDEN_LAYERS[0] / "index.html").read_text()
    assert f"href='../../layers/{HIDDEN_LAYERS[1]}/index.html'" in first
    assert "href='../../index.html'" in first
    assert main(["atlas", "--model", "tiny_vit", "--layer", "encoder.*.mlp.7", "--cache",
                 str(tmp_path / "cache")]) == 2
    assert "matches no layer" in capsys.readouterr().err


def test_a_ray_cluster_nobody_answers_at_is_one_line_within_seconds(tmp_path, monkeypatch,
                                                                     capsys):
    pytest.importorskip("ray.data", reason="Ray is an optional extra (pip install 'ray[data]')")
    import socket

    from vitviz.cli import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert main(["atlas", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--units", "0-1",
                 "--steps", "2", "--engine", "ray", "--cache", str(tmp_path / "cache")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in lines[0]
    assert "ray start --head" in lines[0]


def test_a_job_the_cache_cannot_hold_is_refused_rather_than_evicting_its_own_units(
        tiny_vit, tmp_path, monkeypatch):
    measure = ResultCache(tmp_path / "measure")
    list(run_atlas(tiny_vit, VIT_HIDDEN, [0], measure, steps=STEPS))
    each = measure.stored_bytes(unit_request("tiny_vit", VIT_HIDDEN, 0, steps=STEPS).key())
    assert each > 0
    # Room for about 3 units: 8 would evict the first ones to store the last.
    cache = ResultCache(tmp_path / "cache", size_limit=int(3.5 * each))
    with pytest.raises(UserError, match="VITVIZ_CACHE_SIZE_LIMIT=") as refused:
        list(run_atlas(tiny_vit, VIT_HIDDEN, range(8), cache, steps=STEPS, batch_units=2))
    assert "8 units" in str(refused.value)
    # It stopped after measuring its first batch, which stays stored for a resumed run.
    stored = [u for u in range(8)
              if unit_request("tiny_vit", VIT_HIDDEN, u, steps=STEPS).key() in cache]
    assert stored == [0, 1]
    # Rerun, it is refused on the stored units' size, before anything is computed.
    monkeypatch.setattr(vitviz.surveys.atlas, "compute_result",
                        lambda *a, **k: pytest.fail("computed before the check"))
    with pytest.raises(UserError, match="would evict its own units"):
        list(run_atlas(tiny_vit, VIT_HIDDEN, range(8), cache, steps=STEPS, batch_units=2))
    monkeypatch.undo()
    # A job that fits runs.
    assert [u for u, _ in run_atlas(tiny_vit, VIT_HIDDEN, [0, 1, 2], cache, steps=STEPS)] == [2]


def test_a_job_the_disk_cannot_hold_is_refused_before_it_fills_the_disk(
        tiny_vit, tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(tiny_vit, VIT_HIDDEN, [0], cache, steps=STEPS))
    each = cache.stored_bytes(unit_request("tiny_vit", VIT_HIDDEN, 0, steps=STEPS).key())
    free = int(2.5 * each)  # room for 2 more units, with diskcache's own files
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free))
    with monkeypatch.context() as patched:
        patched.setattr(vitviz.surveys.atlas, "compute_result",
                        lambda *a, **k: pytest.fail("computed before the check"))
        with pytest.raises(UserError, match="GiB free") as refused:
            list(run_atlas(tiny_vit, VIT_HIDDEN, range(8), cache, steps=STEPS))
    assert "7 units still to compute" in str(refused.value)
    assert str(cache.path) in str(refused.value)
    assert [u for u, _ in run_atlas(tiny_vit, VIT_HIDDEN, [0, 1, 2], cache, steps=STEPS)] == [1, 2]


def test_units_drawn_both_ways_are_read_once_and_the_others_left_out(tiny_vit, tmp_path,
                                                                    bright_judge, monkeypatch):
    from vitviz.quality import reading
    from vitviz.surveys.atlas import read_units, reading_figure

    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(tiny_vit, VIT_HIDDEN, range(4), cache, steps=STEPS))
    list(run_atlas(tiny_vit, VIT_HIDDEN, [1, 2], cache, steps=STEPS, minimise=True))
    found = read_units(tiny_vit, VIT_HIDDEN, range(4), cache, steps=STEPS)
    assert sorted(found) == [1, 2]  # units 0 and 3 are drawn up only
    for unit, read in found.items():
        stored = cache.get(unit_request("tiny_vit", VIT_HIDDEN, unit, steps=STEPS).key())
        assert reading_figure(stored, "efficientnet_lite0", read["photo_set_id"]) == \
            read["photo_disjoint"]["pictures"]
    assert reading_figure(cache.get(unit_request("tiny_vit", VIT_HIDDEN, 0, steps=STEPS).key()),
                          "efficientnet_lite0", found[1]["photo_set_id"]) is None
    monkeypatch.setattr(reading, "unit_reading", lambda *a, **k: pytest.fail("read again"))
    assert read_units(tiny_vit, VIT_HIDDEN, range(4), cache, steps=STEPS) == found


def test_the_cli_reads_an_atlas_drawn_both_ways_and_the_site_shows_it(tmp_path, bright_judge,
                                                                     capsys):
    from vitviz.cli import main

    common = ["--model", "tiny_vit", "--layer", VIT_HIDDEN, "--units", "0-2", "--steps", "3",
              "--cache", str(tmp_path / "cache")]
    assert main(["atlas", *common, "--judge"]) == 0
    assert "read by the independent judge: 0 of them" in capsys.readouterr().out
    assert main(["atlas", *common, "--judge", "--minimise"]) == 0
    assert "read by the independent judge: 3 of them" in capsys.readouterr().out
    site = tmp_path / "site"
    assert main(["export-atlas", *common, "--out", str(site)]) == 0
    page = (site / "unit" / "1.html").read_text()
    assert "independent judge (efficientnet_lite0), photo-disjoint queries" in page
    assert '"judge": null' not in (site / "index.html").read_text()
