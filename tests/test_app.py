"""The dashboard, page by page, through Streamlit's AppTest, on the tiny random ViT.

Every page gets: a run that completes with its images and plots, a second session opened from
the link the first one wrote that is served from the cache without one forward pass, and bad
input that ends in an error message rather than a stack trace.
"""
from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import torch
from streamlit.testing.v1 import AppTest

import vitviz.store.runs
import vitviz.surveys.atlas
from ui import execution
from ui.limits import LimitError, load_limits
from ui.queue import RunQueue, ordinal
from ui.resources import run_queue
from ui.settings import compare_requests, optimise_request, page_for
from vitviz.models.registry import pick_device
from vitviz.rendering.precision import resolve_precision
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS
from vitviz.store.cache import ResultCache
from vitviz.store.runs import cached_result

from conftest import VIT_HIDDEN

APP = str(Path(__file__).resolve().parents[1] / "app.py")
OPTIMISE, COMPARE = "pages/Optimise.py", "pages/Compare_seeds.py"
MOVING, RUNS = "pages/Moving_target.py", "pages/Runs.py"
LIMIT_VARIABLES = ("VITVIZ_MAX_STEPS", "VITVIZ_MAX_IMAGE_SIZE", "VITVIZ_MAX_BATCH",
                   "VITVIZ_MAX_CONCURRENT_RUNS", "VITVIZ_LIMITS_FILE")


@pytest.fixture(autouse=True)
def dashboard_env(tmp_path, monkeypatch):
    """tiny_vit by default, a fresh cache per test, no limits from the environment."""
    monkeypatch.setenv("VITVIZ_MODEL", "tiny_vit")
    monkeypatch.setenv("VITVIZ_CACHE_DIR", str(tmp_path / "cache"))
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # so that no vitviz_limits.toml of the checkout applies


@pytest.fixture
def calls(monkeypatch):
    """Runs computed (each RunRequest given to vitviz.store.runs.compute_result) and module forward passes."""
    seen = {"requests": [], "forwards": 0}
    real = vitviz.store.runs.compute_result

    def counting(request, model, progress=None):
        seen["requests"].append(request)
        return real(request, model, progress)

    def forward(_module, _inputs):
        seen["forwards"] += 1

    # Every module that calls it by its own name: the atlas imports it.
    for module in (vitviz.store.runs, vitviz.surveys.atlas):
        monkeypatch.setattr(module, "compute_result", counting)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(forward)
    yield seen
    handle.remove()


def open_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({name: str(value) for name, value in params.items()})
    return at.switch_page(page).run()


def errors(at: AppTest) -> str:
    """The error boxes' text as a visitor reads it (markdown escapes and the invisible word
    joiners that keep links inert removed)."""
    assert not at.exception, [e.value for e in at.exception]
    return re.sub(r"\\(.)", r"\1", "\n".join(e.value for e in at.error)).replace("\u2060", "")


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.caption, *at.markdown])


def button_labels(at: AppTest, start: str) -> list[str]:
    return [b.label for b in at.button if b.label.startswith(start)]


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label.startswith(label)]
    assert found, [b.label for b in at.button]
    return found[0]


def run_then_reopen(page: str, label: str, calls, **params) -> tuple[AppTest, AppTest]:
    """Press the run button; then open the URL the page wrote in a new session."""
    at = open_page(page, **params)
    assert errors(at) == ""
    button(at, label).click().run()
    assert errors(at) == ""
    calls["forwards"] = 0
    done = len(calls["requests"])
    again = open_page(page, **at.query_params)
    assert errors(again) == ""
    assert len(calls["requests"]) == done and calls["forwards"] == 0, "a cached run used the model"
    assert not [b for b in again.button if b.label.startswith(label)]
    return at, again


def test_home_names_the_default_model_device_and_cache_and_warns_about_random_weights(monkeypatch):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert errors(at) == ""
    metrics = {m.label.split(" · ")[0]: m.value for m in at.metric}
    assert metrics["Default model"] == "tiny_vit"
    # The device, and the arithmetic the default method takes on it.
    device = pick_device()
    assert metrics["Device"] == f"{device.type.upper()} · {resolve_precision('auto', device)}"
    assert metrics["Result cache"] == "0 runs"
    assert "set by the VITVIZ_MODEL environment variable" in at.info[0].value
    assert any("random weights" in w.value for w in at.warning)
    assert {"Optimise", "Compare seeds", "Moving target", "Runs"} <= {p.value for p in at.page_link}
    assert at.query_params["model"] == "tiny_vit"

    monkeypatch.setenv("VITVIZ_MODEL", "mobilenet_v2")
    trained = AppTest.from_file(APP, default_timeout=60).run()
    assert errors(trained) == "" and not trained.warning


def test_optimise_runs_live_and_its_link_reopens_from_the_cache(monkeypatch, calls):
    live = []
    update = execution.LiveView.update
    monkeypatch.setattr(execution.LiveView, "update", lambda view, record, total: (
        live.append((record.step, record.images is not None)), update(view, record, total)))
    at, again = run_then_reopen(OPTIMISE, "Run", calls, layer=VIT_HIDDEN, unit=5, steps=8)
    assert [step for step, _ in live] == list(range(9)) and sum(image for _, image in live) >= 2
    (request,) = calls["requests"]
    assert request.config()["objective"]["unit"] == 5 and request.resolved_preset().steps == 8
    assert "Computed just now" in texts(at)
    assert at.query_params["layer"] == VIT_HIDDEN and at.query_params["unit"] == "5"
    for page in (at, again):
        assert page.image and page.get("plotly_chart") and page.get("download_button")
    assert "Served from the result cache" in texts(again)


def test_a_link_to_a_cached_run_on_a_fresh_server_loads_no_model(monkeypatch, calls):
    """The page draws its settings from the model's card on disk; the model loads only to
    compute. A restarted server is Streamlit's resource caches cleared."""
    import streamlit as st

    import ui.resources

    at, _ = run_then_reopen(OPTIMISE, "Run", calls, layer=VIT_HIDDEN, unit=7, steps=4)
    link = dict(at.query_params)
    loads = []
    real = ui.resources.load_model
    monkeypatch.setattr(ui.resources, "load_model", lambda name: loads.append(name) or real(name))
    st.cache_resource.clear()
    again = open_page(OPTIMISE, **link)
    assert errors(again) == "" and "Served from the result cache" in texts(again)
    assert again.image and loads == [], "a cached link loaded the model"
    assert again.selectbox(key="optimise.layer").value == VIT_HIDDEN

    st.cache_resource.clear()
    fresh = open_page(OPTIMISE, **{**link, "unit": "8"})  # not cached: Run loads it, once
    assert errors(fresh) == "" and loads == []
    button(fresh, "Run").click().run()
    assert errors(fresh) == "" and loads == ["tiny_vit"]


def test_optimise_unit_out_of_range_says_the_valid_range(calls):
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=9999, steps=8)
    assert "unit 9999 is out of range" in errors(at) and "valid values are 0 to 63" in errors(at)
    assert button(at, "Run").disabled

    at.number_input(key="optimise.unit").set_value(3).run()
    assert errors(at) == "" and not button(at, "Run").disabled
    at.number_input(key="optimise.unit").set_value(-1).run()
    assert "valid values are 0 to 63" in errors(at)
    assert calls["requests"] == []


def test_unknown_layer_in_a_link_lists_the_close_matches():
    at = open_page(OPTIMISE, layer="encoder.layers.encoder_layer_1.mlp1", steps=8)
    assert "Closest matches" in errors(at) and VIT_HIDDEN in errors(at)
    assert at.selectbox(key="optimise.layer").value == VIT_HIDDEN  # the default, not a crash


def test_malformed_links_and_limits_give_messages(monkeypatch, calls):
    at = open_page(OPTIMISE, steps="many", preset="fancy")
    message = errors(at)
    assert "`steps=many` is not a whole number" in message
    assert "`preset=fancy` is not one of naive, robust" in message
    assert "learning rate must be positive" in errors(open_page(OPTIMISE, lr=-1, steps=8))

    monkeypatch.setenv("VITVIZ_MAX_STEPS", "4")
    at = open_page(OPTIMISE, steps=8)
    assert "8 steps is above this server's limit of 4 (set by VITVIZ_MAX_STEPS)" in errors(at)

    monkeypatch.setenv("VITVIZ_MAX_STEPS", "lots")
    assert "VITVIZ_MAX_STEPS='lots' is not a positive whole number" in errors(open_page(OPTIMISE))
    assert calls["requests"] == []


def test_compare_runs_each_preset_as_one_batch_with_curves_and_no_similarity_score(calls):
    at, again = run_then_reopen(COMPARE, "Run 2 seeds × 2 methods", calls, layer=VIT_HIDDEN,
                                unit=3, seeds=2, preset="robust", preset2="naive", steps=8)
    assert [(r.preset, r.seeds) for r in calls["requests"]] == [("robust", (0, 1)),
                                                                ("naive", (0, 1))]
    for page in (at, again):
        assert len(page.image) == 4 and len(page.get("plotly_chart")) == 1  # the curves
        # How alike seeds look is no figure: noise images look alike too.
        assert not [m for m in page.metric if m.label.startswith("Consistency")]
        assert not [r for r in page.radio if r.label == "Similarity on"]
        assert "measure" not in page.query_params


def test_compare_refuses_a_billion_seeds_before_building_them(calls):
    # Before the fix the page built the list of 10^9 seeds first (tens of GB).
    at = open_page(COMPARE, seeds=10**9, steps=8)
    assert f"`seeds={10**9}`: {10**9} images in one run is above this server's limit" in errors(at)
    assert at.number_input(key="compare.seeds").value == 3 and calls["requests"] == []


def test_compare_refuses_a_batch_above_the_limit(monkeypatch, calls):
    monkeypatch.setenv("VITVIZ_MAX_BATCH", "2")
    at = open_page(COMPARE, seeds=3, steps=8)
    assert "3 images in one run is above this server's limit of 2" in errors(at)
    assert "VITVIZ_MAX_BATCH" in errors(at) and "the default is used" in errors(at)
    at.number_input(key="compare.seeds").set_value(3).run()
    assert "3 images in one run is above this server's limit of 2" in errors(at)
    assert button(at, "Run").disabled and calls["requests"] == []


def test_moving_target_shows_content_and_context_for_naive_and_robust(calls):
    at, again = run_then_reopen(MOVING, "Run naive, robust and frozen naive", calls,
                                layer=VIT_HIDDEN, unit=3, steps=8)
    assert [(r.preset, r.moving_target, r.frozen_context) for r in calls["requests"]] == [
        ("naive", True, False), ("robust", True, False), ("naive", True, True)]
    for page in (at, again):
        # per run: the picture and a filmstrip of where its tokens look; curves and blocks
        assert len(page.image) == 6 and len(page.get("plotly_chart")) == 6
        labels = [m.label for m in page.metric]
        assert labels.count("Patch content") == 3 and labels.count("Moved context") == 3


def test_moving_target_needs_a_vit(calls):
    at = open_page(MOVING, model="tiny_cnn", steps=8)
    assert "needs a Vision Transformer; tiny_cnn is a CNN" in errors(at)
    assert at.selectbox(key="moving_target.model").value == "tiny_vit"


def test_runs_page_lists_reopens_exports_and_deletes(tiny_vit, calls):
    cache = ResultCache()
    settings = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="neuron", unit=2, tokens="patch",
                    preset="naive", lr=0.05, ensemble=1, tv=0.0, seed=0, steps=4, size=32)
    older = optimise_request(settings, 32)
    cached_result(older, cache, loader=lambda _: tiny_vit)
    time.sleep(1.1)  # summaries sort by creation time, to the second
    newer = optimise_request({**settings, "unit": 4}, 32)
    cached_result(newer, cache, loader=lambda _: tiny_vit)
    calls["forwards"] = 0

    at = open_page(RUNS)
    assert errors(at) == "" and at.dataframe
    assert at.selectbox(key="runs.run").value == newer.key()
    assert at.query_params["run"] == newer.key()
    assert at.image and at.get("plotly_chart")
    assert {b.label for b in at.get("download_button")} == {"PNG · seed 0",
                                                            "JSON · config and curves"}
    (link,) = [p for p in at.page_link if p.value == "Open in Optimise"]
    reopened = open_page(OPTIMISE, **dict(parse_qsl(link.proto.query_string)))
    assert "Served from the result cache" in texts(reopened)

    button(at, "Delete this run").click().run()
    assert errors(at) == "" and list(cache.summaries()) == [older.key()]
    assert at.selectbox(key="runs.run").value == older.key()

    gone = open_page(RUNS, run=newer.key())
    assert f"No run with key {newer.key()} is in the cache" in errors(gone)
    assert calls["forwards"] == 0


def test_page_for_rebuilds_the_exact_request():
    settings = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="channel", unit=1, preset="robust",
                    preset2="none", seeds=3, seed=5, steps=6, size=48)
    (request,) = compare_requests(settings, 32)

    class Stored:  # what page_for reads of a Result
        config = request.config()
        model = {"preprocessing": {"size": 32}}

    page, found = page_for(Stored)
    assert page == "compare" and compare_requests(found, 32)[0].key() == request.key()

    single = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="neuron", unit=1, tokens="patch",
                  preset="robust", lr=0.05, ensemble=4, tv=0.0, seed=5, steps=6, size=48,
                  direction="max")
    # The default's photo prior and off; focused, and the default's mean over the patch tokens.
    for box, value in (("photo_prior", PRESETS["robust"].exemplar_stats), ("photo_prior", 0.0),
                       ("focus", 0.25), ("focus", 1.0)):
        request = optimise_request({**single, box: value}, 32)
        Stored.config = request.config()
        page, found = page_for(Stored)
        assert page == "optimise" and found[box] == value
        assert optimise_request(found, 32).key() == request.key()


def test_a_run_waits_for_the_device_and_shows_its_place_in_the_queue(monkeypatch, calls):
    places = []
    show = execution.LiveView.waiting
    monkeypatch.setattr(execution.LiveView, "waiting",
                        lambda view, place: (places.append(place), show(view, place)))
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=1, steps=8)
    with run_queue(1).slot("tiny_vit"):  # another session's run holds the device
        waiting = threading.Thread(target=lambda: button(at, "Run").click().run())
        waiting.start()
        deadline = time.monotonic() + 30
        while not places and time.monotonic() < deadline:
            time.sleep(0.05)
        assert places == [2] and calls["requests"] == []
    waiting.join(60)
    assert errors(at) == "" and len(calls["requests"]) == 1 and at.image


def test_queue_serves_first_come_first_and_reports_positions():
    queue, order, positions = RunQueue(max_concurrent=1), [], {}

    def waiter(name: str, model: str) -> threading.Thread:
        def work():
            with queue.slot(model, lambda p: positions.setdefault(name, p)):
                order.append(name)

        thread = threading.Thread(target=work)
        thread.start()
        deadline = time.monotonic() + 5
        while name not in positions and time.monotonic() < deadline:
            time.sleep(0.01)
        return thread

    with queue.slot("tiny_vit"):
        threads = [waiter("b", "tiny_vit"), waiter("c", "tiny_cnn"), waiter("d", "tiny_vit")]
        assert positions == {"b": 2, "c": 3, "d": 4} and order == []
    for thread in threads:
        thread.join(5)
    assert order == ["b", "c", "d"]
    assert queue.status() == {"running": [], "waiting": []}
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "22nd"]


def test_queue_overlaps_different_models_but_never_one_model():
    queue = RunQueue(max_concurrent=2)
    entered = {"b": threading.Event(), "a": threading.Event()}
    leave_b = threading.Event()

    def hold(model: str, until: threading.Event | None = None):
        with queue.slot(model):
            entered[model].set()
            if until is not None:
                until.wait(5)

    with queue.slot("a"):
        other = threading.Thread(target=hold, args=("b", leave_b))
        other.start()
        assert entered["b"].wait(5), "a run on another model had to wait"
        same = threading.Thread(target=hold, args=("a",))
        same.start()
        assert not entered["a"].wait(0.3), "two runs on one model overlapped"
        assert queue.status() == {"running": ["a", "b"], "waiting": ["a"]}
    assert entered["a"].wait(5)
    leave_b.set()
    for thread in (other, same):
        thread.join(5)
    assert queue.status() == {"running": [], "waiting": []}


def test_limits_come_from_the_file_and_the_environment(tmp_path):
    limits_file = tmp_path / "limits.toml"
    limits_file.write_text("max_steps = 100\nmax_batch = 4\n")
    limits = load_limits({"VITVIZ_LIMITS_FILE": str(limits_file), "VITVIZ_MAX_BATCH": "2"})
    assert (limits.max_steps, limits.max_batch, limits.max_concurrent_runs) == (100, 2, 1)
    assert limits.sources == {"max_steps": str(limits_file), "max_batch": "VITVIZ_MAX_BATCH"}
    limits_file.write_text("max_stepz = 1\n")
    with pytest.raises(LimitError, match="unknown settings"):
        load_limits({"VITVIZ_LIMITS_FILE": str(limits_file)})


HOSTILE = ["[Log in again](http://evil.example/login)", "![x](http://evil.example/p.png)",
           "`x` **bold** <b>html</b> :red[alarm]"]
UNESCAPED = re.compile(r"(?<!\\)[\[\]`*<>:]")


@pytest.mark.parametrize("page", [OPTIMISE, COMPARE, MOVING, RUNS, "pages/Dataset_examples.py"])
def test_values_from_a_link_are_shown_as_text_on_every_page(page):
    for value in HOSTILE:
        at = open_page(page, layer=value, run=value, steps=value)
        sources = [e.value for e in at.error]
        assert sources, f"{page}: no error for {value!r}"
        for source in sources:
            # Every markdown character is escaped: no link, image, code span or directive.
            assert not UNESCAPED.search(source), source
        assert value in errors(at)  # ...and the visitor still reads the value as typed


@pytest.mark.parametrize("page", [OPTIMISE, COMPARE, MOVING, "pages/Dataset_examples.py"])
def test_out_of_range_numbers_in_a_link_are_one_message_each(page, calls):
    huge = "9" * 309  # a float of it overflows; used to hide the page behind an OverflowError
    at = open_page(page, unit=huge, seed=huge, steps=huge, size=0, tokens=huge)
    message = errors(at)
    assert "Unexpected error" not in message
    assert f"`unit={huge}` is out of range" in message
    assert f"`tokens={huge}` is out of range" in message  # found by bench/reliability.py's soak
    assert "`size=0`: Image size must be at least 16 px (got 0)" in message  # not another size
    assert calls["requests"] == []


def test_the_steps_box_starts_at_the_default_presets_steps(calls, monkeypatch):
    monkeypatch.setitem(PRESETS, DEFAULT_PRESET, PRESETS[DEFAULT_PRESET].with_overrides(steps=96))
    at = open_page(OPTIMISE)
    assert errors(at) == "" and at.number_input(key="optimise.steps").value == 96


def test_a_shared_link_keeps_every_digit_of_the_learning_rate(calls):
    at = open_page(OPTIMISE, lr="0.1234567", steps=4)
    assert errors(at) == "" and at.query_params["lr"] == "0.1234567"
    assert at.number_input(key="optimise.lr.robust").value == 0.1234567


def test_deletion_can_be_turned_off_for_a_hosted_demo(tiny_vit, monkeypatch):
    settings = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="neuron", unit=2, tokens="patch",
                    preset="naive", lr=0.05, ensemble=1, tv=0.0, seed=0, steps=4, size=32)
    cached_result(optimise_request(settings, 32), ResultCache(), loader=lambda _: tiny_vit)
    assert [b for b in open_page(RUNS).button if b.label == "Delete this run"]
    monkeypatch.setenv("VITVIZ_ALLOW_DELETE", "0")
    at = open_page(RUNS)
    assert errors(at) == "" and not [b for b in at.button if b.label == "Delete this run"]


def test_delete_removes_the_run_the_visitor_saw_even_if_another_session_removed_it(tiny_vit):
    cache = ResultCache()
    settings = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="neuron", unit=2, tokens="patch",
                    preset="naive", lr=0.05, ensemble=1, tv=0.0, seed=0, steps=4, size=32)
    keys = []
    for unit in (2, 3):
        request = optimise_request({**settings, "unit": unit}, 32)
        cached_result(request, cache, loader=lambda _: tiny_vit)
        keys.append(request.key())
        time.sleep(1.1)
    at = open_page(RUNS, run=keys[1])
    cache.delete(keys[1])  # another session, between this visitor's page load and click
    button(at, "Delete this run").click().run()
    assert errors(at) == "" and list(cache.summaries()) == [keys[0]]


def test_a_damaged_entry_is_reported_once_and_the_runs_page_carries_on(tiny_vit):
    cache = ResultCache()
    settings = dict(model="tiny_vit", layer=VIT_HIDDEN, kind="neuron", unit=2, tokens="patch",
                    preset="naive", lr=0.05, ensemble=1, tv=0.0, seed=0, steps=4, size=32)
    request = optimise_request(settings, 32)
    cached_result(request, cache, loader=lambda _: tiny_vit)
    with sqlite3.connect(cache.path / "cache.db") as db:
        (stored,), = db.execute("SELECT filename FROM Cache WHERE key LIKE 'result/%'")
    (cache.path / stored).write_bytes(b"PK\x03\x04")  # a result's file, cut after its magic
    at = open_page(RUNS, run=request.key())
    assert errors(at) == "" and "was unreadable" in "\n".join(w.value for w in at.warning)
    again = open_page(RUNS)
    assert errors(again) == "" and not again.warning and "No runs yet" in again.info[0].value


def test_a_new_preset_needs_no_change_to_the_dashboard(monkeypatch, calls):
    from dataclasses import replace

    from vitviz.rendering.presets import PRESETS

    monkeypatch.setitem(PRESETS, "mine", replace(PRESETS["naive"], name="mine"))
    at = open_page(COMPARE, layer=VIT_HIDDEN, unit=3, seeds=2, preset="mine", preset2="robust",
                   steps=4)
    button(at, "Run 2 seeds").click().run()
    assert errors(at) == "" and len(at.get("plotly_chart")) == 1


def test_the_atlas_page_computes_missing_units_and_links_each_to_its_own_page(calls):
    at = open_page("pages/Atlas.py", layer=VIT_HIDDEN, steps=4, start=48)
    assert errors(at) == ""
    assert sum("not computed" in c.value for c in at.caption) == 16  # units 48-63
    button(at, "Compute the 16 missing units").click().run()
    assert errors(at) == ""
    assert len(calls["requests"]) == 2, "16 units should run as 2 batches of 8"
    assert len(at.image) == 16 and not any("not computed" in c.value for c in at.caption)
    link = next(p for p in at.page_link if p.value.startswith("#50 ·"))
    assert link.proto.page == "Dataset_examples"
    params = dict(parse_qsl(link.proto.query_string))
    assert params["unit"] == "50" and params["steps"] == "4"
    done = len(calls["requests"])
    examples = open_page("pages/Dataset_examples.py", **params)
    assert errors(examples) == "" and examples.image, "the unit's page did not open its picture"
    assert len(calls["requests"]) == done, "the unit's page recomputed the atlas run"


def test_the_atlas_page_sorts_by_a_quality_figure_and_filters(calls):
    at = open_page("pages/Atlas.py", layer=VIT_HIDDEN, steps=4, start=48)
    button(at, "Compute the 16 missing units").click().run()
    next(s for s in at.selectbox if s.label == "Order").select("robust").run()
    assert errors(at) == ""
    shown = [float(p.value.split("· ")[1].rstrip("x")) for p in at.page_link
             if p.value.startswith("#")]
    assert len(shown) == 16 and shown == sorted(shown, reverse=True) and shown[0] > shown[-1]
    next(s for s in at.selectbox if s.label == "Show").select("missing").run()
    assert errors(at) == "" and len(at.image) == 0


def test_the_examples_page_accentuates_the_units_strongest_photo_and_reopens_it(calls):
    params = {"layer": VIT_HIDDEN, "unit": 7, "steps": 4}
    at = open_page("pages/Dataset_examples.py", **params)
    button(at, "Accentuate its strongest photo").click().run()
    assert errors(at) == ""
    (request,) = calls["requests"]
    assert request.accentuate == 0 and not request.minimise
    assert any("from " in str(image.proto) for image in at.image)
    assert any("what changed" in str(image.proto) for image in at.image)
    again = open_page("pages/Dataset_examples.py", **params)
    assert errors(again) == "" and len(calls["requests"]) == 1, "recomputed a cached exemplar"
    assert any("from " in str(image.proto) for image in again.image)


def test_the_optimise_page_draws_what_suppresses_a_unit(calls):
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=3, steps=4, direction="min")
    button(at, "Run").click().run()
    assert errors(at) == ""
    (request,) = calls["requests"]
    assert request.minimise and request.config()["minimise"] is True
    again = open_page(OPTIMISE, **at.query_params)  # the link keeps the direction
    assert errors(again) == "" and len(calls["requests"]) == 1, "the link lost its direction"


def switch(at: AppTest, page: str) -> AppTest:
    """Go to `page` in the same session, as the menu does (Streamlit drops the URL's query)."""
    at.query_params.clear()
    return at.switch_page(page).run()


def test_each_page_keeps_its_own_settings_while_the_visitor_moves_between_pages(calls):
    at = open_page(OPTIMISE)
    assert errors(at) == ""
    defaults = {"layer": at.selectbox(key="optimise.layer").value,
                "unit": at.number_input(key="optimise.unit").value,
                "steps": at.number_input(key="optimise.steps").value}
    layer = "encoder.layers.encoder_layer_0.mlp.1"
    assert defaults["layer"] != layer and defaults["unit"] != 11 and defaults["steps"] != 12
    at.selectbox(key="optimise.layer").set_value(layer).run()
    at.number_input(key="optimise.unit").set_value(11).run()
    at.number_input(key="optimise.steps").set_value(12).run()
    assert errors(at) == ""

    # Another page starts on its own defaults: nothing of Optimise's leaks into it.
    switch(at, COMPARE)
    assert errors(at) == ""
    assert at.selectbox(key="compare.layer").value == defaults["layer"]
    assert at.number_input(key="compare.unit").value == defaults["unit"]
    assert at.number_input(key="compare.steps").value == defaults["steps"]
    assert at.query_params["unit"] == str(defaults["unit"])
    at.number_input(key="compare.unit").set_value(5).run()

    # Back on Optimise: its settings as the visitor left them, and in the URL a link copies.
    switch(at, OPTIMISE)
    assert errors(at) == ""
    assert at.selectbox(key="optimise.layer").value == layer
    assert at.number_input(key="optimise.unit").value == 11
    assert at.number_input(key="optimise.steps").value == 12
    assert (at.query_params["layer"], at.query_params["unit"], at.query_params["steps"]) == (
        layer, "11", "12")

    # ...and Compare kept its own, not Optimise's.
    switch(at, COMPARE)
    assert errors(at) == ""
    assert at.number_input(key="compare.unit").value == 5
    assert at.selectbox(key="compare.layer").value == defaults["layer"]
    assert at.number_input(key="compare.steps").value == defaults["steps"]
    assert calls["requests"] == []


VIT_B_16_HIDDEN = "encoder.layers.encoder_layer_11.mlp.1"


@pytest.fixture
def downloads(tmp_path, monkeypatch):
    """No weights of vit_b_16 on disk (an empty torch hub folder), and every file that torch
    hub would fetch recorded and refused."""
    from ui.resources import ALLOW_DOWNLOAD_ENV

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("VITVIZ_WEIGHTS_VIT_B_16", raising=False)
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    started = []

    def refuse(url, *args, **kwargs):
        started.append(url)
        raise ConnectionError("this test has no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    return started


@pytest.mark.parametrize("page", [OPTIMISE, COMPARE, MOVING, "pages/Dataset_examples.py",
                                  "pages/Atlas.py"])
def test_a_link_never_downloads_weights(page, downloads, calls):
    at = open_page(page, model="vit_b_16", layer=VIT_B_16_HIDDEN, unit=3, steps=4)
    message = errors(at)
    assert "The weights of 'vit_b_16' are not on this server" in message
    assert "does not download weights on a visitor's request" in message
    assert "VITVIZ_ALLOW_DOWNLOAD=1" in message
    assert downloads == [] and calls["requests"] == []
    assert not [b for b in at.button if b.label.startswith(("Run", "Compute", "Accentuate"))]


def test_only_the_operator_lets_the_dashboard_download_weights(downloads, monkeypatch):
    # A link to the home page makes vit_b_16 the session's model: the next page says no too.
    at = open_page("pages/Home.py", model="vit_b_16")
    assert errors(at) == "" and at.selectbox(key="home.model").value == "vit_b_16"
    switch(at, OPTIMISE)
    assert "does not download weights on a visitor's request" in errors(at)
    assert downloads == []
    # With VITVIZ_ALLOW_DOWNLOAD=1 the same link fetches the weights (here refused: no network),
    # so the refusal above is the dashboard's, not a download that failed unnoticed.
    monkeypatch.setenv("VITVIZ_ALLOW_DOWNLOAD", "1")
    at = open_page(OPTIMISE, model="vit_b_16", layer=VIT_B_16_HIDDEN, unit=3, steps=4)
    assert "could not be downloaded" in errors(at)
    assert downloads and all(url.endswith("/vit_b_16-c867db91.pth") for url in downloads)


ATLAS, EXAMPLES = "pages/Atlas.py", "pages/Dataset_examples.py"


def exemplar_captions(at: AppTest) -> list[str]:
    """The captions of the accentuated exemplars shown ('from <photo> (...) · now ...')."""
    return [str(image.proto) for image in at.image if "from " in str(image.proto)]


def test_the_optimise_page_accentuates_the_units_photo_and_its_link_reopens_it(tiny_vit, calls):
    from vitviz.data.photo_sets import examples_for

    params = {"layer": VIT_HIDDEN, "unit": 7, "steps": 4, "direction": "min"}
    at = open_page(OPTIMISE, **params)
    assert errors(at) == "" and not at.image and calls["requests"] == []  # nothing on load
    button(at, "Accentuate its weakest photo").click().run()
    assert errors(at) == ""
    (request,) = calls["requests"]
    assert request.accentuate == 0 and request.minimise and request.preset == DEFAULT_PRESET
    # Driven down, it starts from the unit's weakest photo view, named in the caption.
    weakest = examples_for(tiny_vit, VIT_HIDDEN, "patch").extreme_views(7, 1, True)[0]
    (caption,) = exemplar_captions(at)
    assert f"from {weakest.photo.split('/')[-1]} ({weakest.activation:.3g})" in caption
    # Beside it, the photo it started from and what accentuation changed in it.
    shown = [str(image.proto) for image in at.image]
    assert any("its photo, unchanged" in text for text in shown)
    assert any("what changed" in text and "around grey" in text for text in shown)
    figure = {m.label: m.value for m in at.metric}["Robust act. · photo min"]
    calls["forwards"] = 0
    again = open_page(OPTIMISE, **at.query_params)
    assert errors(again) == "" and len(calls["requests"]) == 1 and calls["forwards"] == 0
    assert exemplar_captions(again) == [caption]
    assert {m.label: m.value for m in again.metric}["Robust act. · photo min"] == figure
    assert not [b for b in again.button if b.label.startswith("Accentuate")]


def test_the_atlas_driven_down_stores_the_optimise_pages_runs_and_links_to_them(calls):
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56, direction="min")
    assert errors(at) == "" and at.query_params["direction"] == "min"
    button(at, "Compute the 8 missing units").click().run()
    assert errors(at) == "" and len(at.image) == 8
    (batch,) = calls["requests"]
    assert batch.minimise and batch.config()["units"] == list(range(56, 64))
    # The Optimise page driving a unit down, on its own defaults, asks for the atlas's run...
    calls["forwards"] = 0
    optimise = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=59, steps=4, direction="min")
    assert errors(optimise) == "" and "Served from the result cache" in texts(optimise)
    # ...and so does the unit's link, which goes there.
    link = next(p for p in at.page_link if p.value.startswith("#60 ·"))
    assert link.proto.page == "Optimise"
    params = dict(parse_qsl(link.proto.query_string))
    assert params["direction"] == "min" and params["unit"] == "60"
    linked = open_page(OPTIMISE, **params)
    assert errors(linked) == "" and "Served from the result cache" in texts(linked)
    assert len(calls["requests"]) == 1 and calls["forwards"] == 0


def test_the_atlas_shows_each_units_accentuated_exemplar_beside_its_picture(calls):
    examples = open_page(EXAMPLES, layer=VIT_HIDDEN, unit=61, steps=4)
    button(examples, "Accentuate its strongest photo").click().run()
    assert errors(examples) == "" and len(calls["requests"]) == 1
    calls["forwards"] = 0
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=60)
    assert errors(at) == "" and not exemplar_captions(at)  # off unless asked for
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=60, exemplars=True)
    assert errors(at) == "" and at.query_params["exemplars"] == "True"
    assert len(exemplar_captions(at)) == 1, "the cached exemplar of unit 61 is not shown"
    assert len(calls["requests"]) == 1 and calls["forwards"] == 0
    button(at, "Accentuate the 3 units").click().run()
    assert errors(at) == "" and len(exemplar_captions(at)) == 4
    assert all("accentuated" in caption for caption in exemplar_captions(at))
    changes = [str(image.proto) for image in at.image if "what changed" in str(image.proto)
               or "unchanged" in str(image.proto)]
    assert len(changes) == 4, "each exemplar shows what accentuation changed below it"
    computed = calls["requests"][1:]  # one batch of the three, each from its strongest photo
    assert len(computed) == 1 and list(computed[0].objective["unit"]) == [60, 62, 63]
    assert computed[0].accentuate == 0 and not computed[0].minimise


def test_the_atlas_mixes_each_picture_into_its_units_first_exemplar_on_request(calls):
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56)
    button(at, "Compute the 8 missing units").click().run()
    assert errors(at) == "" and not button_labels(at, "Mix each")  # off unless asked for
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56, mixed=True)
    assert errors(at) == "" and at.query_params["mixed"] == "True"
    button(at, "Mix each of the 8 pictures").click().run()
    assert errors(at) == ""
    captions = [str(image.proto) for image in at.image]
    assert sum("mixed " in c or "unchanged ·" in c for c in captions) == 8
    assert any("mixed " in c for c in captions)
    calls["forwards"] = 0
    at.run()  # kept for the session: shown again without the model
    assert calls["forwards"] == 0 and not button_labels(at, "Mix each")


def test_an_atlas_link_keeps_its_order_filter_drive_and_exemplars(calls):
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, order="robust", show="missing",
                   direction="min", exemplars=True)
    assert errors(at) == ""
    assert next(s for s in at.selectbox if s.label == "Order").value == "robust"
    assert next(s for s in at.selectbox if s.label == "Show").value == "missing"
    assert at.radio(key="atlas.direction").value == "min"
    assert at.toggle(key="atlas.exemplars").value is True
    assert "is not one of" not in errors(open_page(ATLAS, order="robust"))



def test_the_atlas_page_links_to_the_atlas_of_every_other_layer(calls):
    at = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, order="robust", direction="min")
    links = {p.label: p for p in at.page_link if p.proto.page == "Atlas"}
    other = "encoder.layers.encoder_layer_0.mlp.1"
    assert set(links) == {other, VIT_HIDDEN} and links[VIT_HIDDEN].proto.disabled
    params = dict(parse_qsl(links[other].proto.query_string))
    assert params["layer"] == other and params["start"] == "0"
    assert params["steps"] == "4" and params["order"] == "robust" and params["direction"] == "min"
    there = open_page(ATLAS, **params)
    assert errors(there) == "" and there.selectbox(key="atlas.layer").value == other

PAGE_SCHEMAS = {OPTIMISE: "optimise", COMPARE: "compare", MOVING: "moving_target",
                EXAMPLES: "examples", ATLAS: "atlas"}
HOSTILE_MODEL = "vit_l_16:random"  # 1.2 GB of random weights, 11 s to build: never on a link


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


@pytest.mark.parametrize("page", ["pages/Home.py", OPTIMISE, COMPARE, MOVING, EXAMPLES, ATLAS])
def test_a_link_to_a_model_the_server_does_not_serve_loads_nothing(page, monkeypatch, calls):
    """A hosted demo's operator lists its models; a link naming another one (here with every
    size a link can reach far above the limits) gets the list, and no model, card or memory."""
    import ui.resources

    monkeypatch.setenv("VITVIZ_MODELS_ALLOWED", "tiny_vit, tiny_cnn")
    open_page(page)  # imports and the served model's card: what any visitor costs
    loads, cards = [], []
    monkeypatch.setattr(ui.resources, "load_model",
                        lambda name, *a, **k: loads.append(name))
    monkeypatch.setattr(ui.resources, "model_weights", lambda name: cards.append(name))
    before = rss_mb()
    at = open_page(page, model=HOSTILE_MODEL, layer=VIT_B_16_HIDDEN, unit=3, steps=10**9,
                   size=10**6, seeds=10**9, start=10**9)
    grown = rss_mb() - before
    message = errors(at)
    assert f"This server does not serve the model '{HOSTILE_MODEL}'" in message
    assert "It serves tiny_vit, tiny_cnn (set by VITVIZ_MODELS_ALLOWED)" in message
    assert loads == [] and cards == [] and calls["requests"] == [] and calls["forwards"] == 0
    assert grown < 100, f"a refused link grew the server by {grown:.0f} MB"
    assert not [b for b in at.button if b.label.startswith(("Run", "Compute", "Accentuate"))]
    # The picker offers the served models only, and the visitor goes on with one of them.
    offered = [o.split(" · ")[0] for o in at.selectbox[0].options]
    assert offered == (["tiny_vit"] if page == MOVING else ["tiny_vit", "tiny_cnn"])


@pytest.mark.parametrize("page", [OPTIMISE, COMPARE, MOVING, EXAMPLES, ATLAS])
def test_a_link_asking_too_much_of_a_served_model_is_cut_before_it_loads(page, monkeypatch,
                                                                         calls):
    """Every size a link reaches is held to the limits before the page loads the model (here a
    served one whose card is not on disk yet): the model loads once, as for any visitor, and
    the page goes on with the defaults in place of the sizes asked for."""
    import streamlit as st

    import ui.resources
    from ui.settings import SCHEMAS

    st.cache_resource.clear()
    asked = {"steps": 10**9, "size": 10**6, "seeds": 10**9}
    real, loads = ui.resources.load_model, []
    monkeypatch.setattr(ui.resources, "load_model",
                        lambda name, *a, **k: loads.append(name) or real(name, *a, **k))
    before = rss_mb()
    at = open_page(page, model="tiny_vit", layer=VIT_HIDDEN, unit=3, **asked)
    message, prefix = errors(at), PAGE_SCHEMAS[page]
    held = [name for name in asked if name in SCHEMAS[prefix]]
    assert held and message.count("the default is used") == len(held), message
    for name in held:
        assert f"`{name}={asked[name]}`: {asked[name]} " in message.replace("Image size ", "")
        key = f"{prefix}.{name}" + (".tiny_vit" if name == "size" else "")
        assert at.number_input(key=key).value < 10**4
    assert loads == ["tiny_vit"] and calls["requests"] == []
    assert rss_mb() - before < 100


def test_the_visitor_goes_on_with_a_served_model_after_a_refused_link(monkeypatch, calls):
    monkeypatch.setenv("VITVIZ_MODELS_ALLOWED", "tiny_vit")
    at = open_page(OPTIMISE, model=HOSTILE_MODEL, layer=VIT_HIDDEN, unit=3, steps=4)
    assert "does not serve the model" in errors(at)
    at.selectbox(key="optimise.model").set_value("tiny_vit").run()
    assert errors(at) == "" and at.query_params["model"] == "tiny_vit"
    button(at, "Run").click().run()
    assert errors(at) == "" and len(calls["requests"]) == 1


def test_an_untrained_copy_is_served_only_when_listed(tmp_path, monkeypatch):
    assert load_limits({}).serves(HOSTILE_MODEL)  # nothing set: a local install serves all
    limits = load_limits({"VITVIZ_MODELS_ALLOWED": "vit_b_16,tiny_vit:random"})
    assert limits.serves("vit_b_16") and not limits.serves("vit_b_16:random")
    assert limits.serves("tiny_vit") and not limits.serves("vit_l_16")
    with pytest.raises(LimitError, match="It serves vit_b_16, tiny_vit"):
        limits.check_model("vit_b_16:random")
    file = tmp_path / "limits.toml"
    file.write_text('models_allowed = ["vit_b_16:random"]\nmax_steps = 64\n')
    from_file = load_limits({"VITVIZ_LIMITS_FILE": str(file)})
    assert from_file.serves("vit_b_16:random") and not from_file.serves("vit_b_16")
    assert from_file.max_steps == 64 and from_file.sources["models_allowed"] == str(file)
    for bad, says in (('models_allowed = []', "at least one model"),
                      ('models_allowed = "vit_b_16"', "at least one model"),
                      ('models_allowed = ["vit_b16"]', "Did you mean vit_b_16")):
        file.write_text(bad)
        with pytest.raises(LimitError, match=says):
            load_limits({"VITVIZ_LIMITS_FILE": str(file)})
    # Only the untrained copy served: the picker shows it, with the toggle fixed on.
    monkeypatch.setenv("VITVIZ_MODELS_ALLOWED", "resnet50:random tiny_vit")
    at = open_page(OPTIMISE, model="resnet50:random", steps=4)
    assert errors(at) == "" and at.query_params["model"] == "resnet50:random"
    toggle = at.toggle(key="optimise.random")
    assert toggle.value and toggle.disabled


def test_a_run_waiting_for_the_machines_cpu_says_so(monkeypatch, calls):
    """Another process's run holds the machine-wide CPU slot: the visitor reads why nothing
    moves, and the run starts once the slot is free."""
    import filelock

    from vitviz.common.cpu_slot import lock_path

    said, seen_wait = [], threading.Event()
    say = execution.LiveView._say

    def spy(view, text):
        said.append(text)
        if text == execution.CPU_WAIT:
            seen_wait.set()
        say(view, text)

    monkeypatch.setattr(execution.LiveView, "_say", spy)
    holding = threading.Event()

    def hold() -> None:  # a thread opens the lock file itself: another process, to the lock
        with filelock.FileLock(lock_path(), thread_local=True):
            holding.set()
            seen_wait.wait(30)  # released once the page said so (or the test fails below)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=2, steps=4)
    button(at, "Run").click().run()
    holder.join(60)
    assert errors(at) == "" and len(calls["requests"]) == 1 and at.image
    assert "Waiting for another run on this machine's CPU to finish" in execution.CPU_WAIT
    assert execution.CPU_WAIT in said, said
    assert said.index(execution.CPU_WAIT) < said.index("Starting: the first step…", 1)


def test_a_default_run_shows_its_layers_photo_pass_and_makes_it_once(monkeypatch, calls):
    """The default holds a unit's picture to its own photos, found by a pass of the layer over
    the photo set before the first step: the page shows that pass, and the run reuses it."""
    from collections import OrderedDict

    from vitviz.data import photo_sets

    monkeypatch.setattr(photo_sets, "_LAYER_CACHE", OrderedDict())
    measured, shown = [], []
    measure = photo_sets.measure_layer

    def counting(model, layer, *args, **kwargs):
        measured.append(layer)
        return measure(model, layer, *args, **kwargs)

    monkeypatch.setattr(photo_sets, "measure_layer", counting)
    monkeypatch.setattr(execution.LiveView, "measuring",
                        lambda view, layer, done, total: shown.append((layer, done, total)))
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=2, steps=4)
    button(at, "Run").click().run()
    assert errors(at) == "" and len(calls["requests"]) == 1 and at.image
    assert measured == [VIT_HIDDEN]
    assert shown and shown[-1][0] == VIT_HIDDEN and shown[-1][1] == shown[-1][2]


def test_the_photo_prior_box_turns_the_prior_off_and_its_link_keeps_it(monkeypatch, calls):
    """At 0 the page's run is the default without its photo prior: no photo pass, the key of
    the preset without it (and so of runs made before the prior was the default)."""
    from vitviz.data import photo_sets
    from vitviz.store.runs import RunRequest

    from conftest import NO_PHOTO_PRIOR

    measured = []
    monkeypatch.setattr(photo_sets, "measure_layer",
                        lambda *args, **kwargs: measured.append(args) or None)
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=2, steps=4)
    assert at.number_input(key="optimise.photo_prior.robust").value == \
        PRESETS[DEFAULT_PRESET].exemplar_stats > 0
    at.number_input(key="optimise.photo_prior.robust").set_value(0.0).run()
    button(at, "Run").click().run()
    assert errors(at) == "" and at.image and measured == []
    (request,) = calls["requests"]
    without = RunRequest("tiny_vit", request.objective, seeds=(0,),
                         overrides={"steps": 4, **NO_PHOTO_PRIOR})
    assert request.config()["preset"] == without.config()["preset"]
    assert at.query_params["photo_prior"] == "0.0"
    again = open_page(OPTIMISE, **at.query_params)
    assert errors(again) == "" and "Served from the result cache" in texts(again)
    assert len(calls["requests"]) == 1


def test_the_token_focus_box_focuses_the_run_and_its_link_keeps_it(calls):
    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=2, steps=4)
    assert at.number_input(key="optimise.focus.robust").value == \
        PRESETS[DEFAULT_PRESET].token_focus
    at.number_input(key="optimise.focus.robust").set_value(0.25).run()
    button(at, "Run").click().run()
    assert errors(at) == "" and at.image
    (request,) = calls["requests"]
    assert request.config()["preset"]["token_focus"] == 0.25
    assert at.query_params["focus"] == "0.25"
    again = open_page(OPTIMISE, **at.query_params)
    assert errors(again) == "" and "Served from the result cache" in texts(again)
    assert len(calls["requests"]) == 1
    at.number_input(key="optimise.focus.robust").set_value(0.0).run()
    assert "token_focus" in errors(at)


def test_waiting_messages_name_what_is_awaited():
    assert execution.queue_text(2) == ("Waiting: queued behind 1 run for the device "
                                       "(2nd in line)…")
    assert "queued behind 3 runs" in execution.queue_text(4)
    assert execution.loading_text("vit_b_16").startswith("Loading vit_b_16")


def test_the_atlas_reads_units_drawn_both_ways_and_shows_the_reading_beside_each(calls,
                                                                                bright_judge):
    up = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56)
    button(up, "Compute the 8 missing units").click().run()
    assert errors(up) == "" and not button_labels(up, "Read the")  # not drawn down yet
    down = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56, direction="min")
    button(down, "Compute the 8 missing units").click().run()
    assert errors(down) == ""
    button(down, "Read the 8 units of this page drawn both ways").click().run()
    assert errors(down) == "" and not button_labels(down, "Read the")
    labels = [p.value for p in down.page_link if p.value.startswith("#")]
    assert len(labels) == 8 and all(" · judge " in label for label in labels)
    # Stored with each unit's maximising run: the page driven up shows the same readings,
    # sorted by them, without judging or drawing again.
    calls["forwards"] = 0
    up = open_page(ATLAS, layer=VIT_HIDDEN, steps=4, start=56, order="judge")
    assert errors(up) == "" and len(calls["requests"]) == 2 and calls["forwards"] == 0
    scores = [int(p.value.split("judge ")[1].rstrip("%")) for p in up.page_link
              if p.value.startswith("#")]
    assert len(scores) == 8 and scores == sorted(scores, reverse=True)
    # And the unit's own page shows its reading at once.
    link = next(p for p in up.page_link if p.value.startswith("#"))
    unit_page = open_page(EXAMPLES, **dict(parse_qsl(link.proto.query_string)))
    assert errors(unit_page) == "" and unit_page.dataframe
    assert not button_labels(unit_page, "Ask an independent judge")


def test_the_examples_page_mixes_the_picture_into_the_photos_the_judge_uses(calls):
    at = open_page("pages/Dataset_examples.py", layer=VIT_HIDDEN, unit=7, steps=4)
    button(at, "Visualise").click().run()
    if button_labels(at, "Find the examples"):
        button(at, "Find the examples").click().run()
    assert errors(at) == "" and not button_labels(at, "Find the examples")
    button(at, "Mix the picture into its photos").click().run()
    assert errors(at) == ""
    from ui.mixing import SHOWN

    captions = [str(image.proto) for image in at.image]
    assert sum("mixed " in c or "unchanged ·" in c for c in captions) == SHOWN
    assert any("mixed " in c for c in captions)
    # Kept for the session: a rerun neither asks again nor runs the model.
    calls["forwards"] = 0
    at.run()
    assert not button_labels(at, "Mix the picture") and calls["forwards"] == 0


def test_the_optimise_page_mixes_a_picture_driven_down_into_the_weakest_photos(tiny_vit, calls):
    from ui.mixing import SHOWN

    at = open_page(OPTIMISE, layer=VIT_HIDDEN, unit=7, steps=4, direction="min")
    button(at, "Run").click().run()
    button(at, "Mix the picture into its photos").click().run()
    assert errors(at) == ""
    captions = [str(image.proto) for image in at.image]
    assert sum("mixed " in c or "unchanged ·" in c for c in captions) == SHOWN
