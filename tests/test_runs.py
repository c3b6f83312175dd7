import copy
import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vitviz import __version__
from vitviz.api import visualise
from vitviz.common.cpu_slot import cpu_slot
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import ALGORITHM_VERSION, NonFiniteLoss
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest, cached_result

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def request(**changes):
    fields = dict(model="tiny_vit", objective=O.neuron(VIT_HIDDEN, 3).spec(), seeds=(0, 1),
                  preset="robust", overrides={"steps": 6}, record_every=2)
    fields.update(changes)
    return RunRequest(**fields)


def test_config_is_complete_and_key_tracks_every_knob():
    config = request().config()
    assert config["vitviz_version"] == __version__
    assert config["algorithm_version"] == ALGORITHM_VERSION  # a behaviour change misses the cache
    assert config["preset"]["name"] == "robust" and config["preset"]["steps"] == 6
    assert config["preset"]["transforms"][0][0] == "crop" and config["preset"]["canvas_scale"] == 2.0
    assert config["seeds"] == [0, 1]
    assert request().key() == request().key()
    assert request(overrides={"steps": 6, "lr": 0.1}).key() != request().key()
    assert request(seeds=(0, 2)).key() != request().key()


def test_a_whole_number_for_a_float_knob_is_the_same_run():
    # As a sweep's JSON or a notebook spells it: the same run, the same cache entry.
    whole = request(overrides={"steps": 6, "lr": 1, "natural_stats": 1}, accentuate=0)
    assert whole.key() == request(overrides={"steps": 6, "lr": 1.0, "natural_stats": 1.0},
                                  accentuate=0).key()
    at_default = request(overrides={"steps": 6, "accentuate_weight": 10}, accentuate=0)
    assert at_default.key() == request(accentuate=0).key()
    assert whole.config()["preset"]["steps"] == 6  # an int knob stays an int


def test_cached_run_is_returned_without_touching_the_model(tmp_path, tiny_vit):
    cache = ResultCache(tmp_path)
    loads = []
    first, hit = cached_result(request(), cache, loader=lambda name: loads.append(name) or tiny_vit)
    assert not hit and loads == ["tiny_vit"]

    def no_model(name):
        raise AssertionError("the model was loaded for a cached run")

    second, hit = cached_result(request(), cache, loader=no_model)
    assert hit
    assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images))
    assert second.activation == first.activation
    assert set(second.checkpoints) == {0, 2, 4, 6}
    assert list(cache.summaries()) == [request().key()]


def test_failed_run_leaves_no_cache_entry(tmp_path, tiny_vit):
    cache = ResultCache(tmp_path)
    broken = copy.deepcopy(tiny_vit)
    broken.module.heads.head.weight.fill_(float("nan"))
    logit_request = request(objective=O.logit("heads.head", 1).spec())
    with pytest.raises(NonFiniteLoss):
        cached_result(logit_request, cache, loader=lambda name: broken)
    assert logit_request.key() not in cache and cache.summaries() == {}


def test_delete_removes_result_and_summary(tmp_path, tiny_vit):
    cache = ResultCache(tmp_path)
    cached_result(request(), cache, loader=lambda name: tiny_vit)
    cache.delete(request().key())
    assert cache.summaries() == {} and cache.get(request().key()) is None


def test_export_writes_png_per_seed_and_json_with_config_and_curves(tmp_path, tiny_vit):
    result, _ = cached_result(request(), None, loader=lambda name: tiny_vit)
    paths = result.save(tmp_path)
    assert sorted(p.name for p in paths) == ["result.json", "seed0.png", "seed1.png"]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["config"] == request().config()
    assert saved["model"]["weights"] == "random-init (seed 0)" and saved["model"]["random_init"]
    assert len(saved["activation"]) == 2 and len(saved["activation"][0]) == 7
    png = Image.open(tmp_path / "seed1.png")
    assert png.size == (64, 64)  # the whole canvas: twice the 32-px input
    assert json.loads(png.text["vitviz:config"])["seeds"] == [0, 1]


def test_visualise_api_runs_in_a_notebook_without_streamlit(tiny_vit, tmp_path):
    result = visualise(tiny_vit, unit=4, seeds=[0, 1], steps=5, cache=ResultCache(tmp_path))
    assert len(result.images) == 2 and result.images[0].shape == (64, 64, 3)
    assert result.config["objective"]["layer"] == VIT_HIDDEN
    assert result.activation[0][-1] > result.activation[0][0]


def test_a_measured_run_loads_the_model_once_and_writes_the_cache_once(tmp_path, tiny_vit,
                                                                        monkeypatch):
    loads, writes = [], []
    real_put = ResultCache.put
    monkeypatch.setattr(ResultCache, "put",
                        lambda self, key, result: writes.append(key) or real_put(self, key, result))
    cache = ResultCache(tmp_path)
    result, hit = cached_result(request(seeds=(0, 1)), cache,
                      loader=lambda name: loads.append(name) or tiny_vit, measure=True)
    assert not hit and len(loads) == 1 and len(writes) == 1
    assert "relative_robust_activation" in result.metrics
    again, hit = cached_result(request(seeds=(0, 1)), cache, loader=lambda name: loads.append(name),
                     measure=True)
    assert hit and len(loads) == 1 and len(writes) == 1  # measured and stored: nothing to do
    assert again.metrics["relative_robust_activation"] == result.metrics["relative_robust_activation"]


def test_another_photo_set_remeasures_the_figures_and_keeps_the_pictures(tmp_path, tiny_vit,
                                                                         monkeypatch):
    from vitviz.data import photos
    from vitviz.store import runs

    # The default reads its unit's photos (the exemplar-statistics prior); without the prior
    # it reads none.
    plain = {"overrides": {"steps": 6, **NO_PHOTO_PRIOR}}
    reading = {"default": request(),
               "natural statistics": request(overrides={**plain["overrides"], "natural_stats": 1.0}),
               "MACO": request(preset="maco", overrides={"steps": 6}),
               "accentuated": request(accentuate=0)}
    keys = {name: r.key() for name, r in {"plain": request(**plain), **reading}.items()}
    cache = ResultCache(tmp_path)
    first, _ = cached_result(request(**plain), cache, loader=lambda name: tiny_vit, measure=True)
    installed = photos.available_sources()
    monkeypatch.setattr(photos, "available_sources", lambda: {**installed, "extra": 20})
    # Only a run that reads photos gives other pictures on another set.
    assert request(**plain).key() == keys["plain"]
    assert all(r.key() != keys[name] for name, r in reading.items())

    def no_run(*args, **kwargs):
        raise AssertionError("the pictures were computed again")

    monkeypatch.setattr(runs, "compute_result", no_run)
    again, hit = cached_result(request(**plain), cache, loader=lambda name: tiny_vit,
                               measure=True)
    assert hit and all(np.array_equal(a, b) for a, b in zip(first.images, again.images))
    assert first.metrics["photo_set_id"] != again.metrics["photo_set_id"]
    assert again.metrics["photo_set_id"] == photos.photo_set_id()
    assert cache.get(request(**plain).key()).metrics["photo_set_id"] == photos.photo_set_id()


def test_cpu_runs_take_turns_across_processes(tmp_path, monkeypatch):
    """A second process's run waits while another holds the machine's CPU slot."""
    monkeypatch.setenv("VITVIZ_HOME", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time, torch
        from vitviz.common.cpu_slot import cpu_slot
        with cpu_slot(torch.device("cpu")):
            print("holding", flush=True)
            time.sleep(2)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    start = time.perf_counter()
    with cpu_slot(torch.device("cpu")):
        waited = time.perf_counter() - start
    holder.wait(10)
    assert waited > 0.8, f"entered after {waited:.2f} s while another process held the CPU"
    monkeypatch.setenv("VITVIZ_CPU_SLOT", "0")
    with cpu_slot(torch.device("cpu")):
        pass
