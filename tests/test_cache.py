"""The result cache survives what a public demo meets: killed runs, damaged files, crafted entries,
a full disk budget. Each test reproduces one failure that was found on an earlier version."""
import io
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vitviz.common.hashing import config_key
from vitviz.rendering import objectives as O
from vitviz.store.cache import ZIP_MAGIC, ResultCache
from vitviz.store.results import Result, encode_png
from vitviz.store.runs import RunRequest, cached_result

from conftest import VIT_HIDDEN, stroke_picture


def result(seed: int = 0, size: int = 64) -> Result:
    rng = np.random.default_rng(seed)
    image = lambda: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # noqa: E731
    return Result(config={"seeds": [seed], "objective": {"type": "neuron"}, "model": "m",
                          "preset": {"name": "robust"}},
                  model={"name": "m"}, images=[image()], checkpoints={2: [image()]},
                  steps=[0, 1, 2], activation=[[0.0, 1.0, 2.5]], loss=[[0.0, -1.0, -2.5]],
                  created=f"2026-01-01T00:00:0{seed}")


def value_files(path: Path) -> list[Path]:
    """The store's result archives (summaries have files of their own too)."""
    return [p for p in path.rglob("*.val") if p.read_bytes().startswith(ZIP_MAGIC)]


def test_round_trip_keeps_pixels_curves_and_checkpoints(tmp_path):
    cache, stored = ResultCache(tmp_path), result()
    cache.put("k", stored)
    loaded = ResultCache(tmp_path).get("k")
    assert np.array_equal(loaded.images[0], stored.images[0])
    assert np.array_equal(loaded.checkpoints[2][0], stored.checkpoints[2][0])
    assert loaded.activation == stored.activation and loaded.config == stored.config
    assert list(cache.summaries()) == ["k"]


def test_what_figures_read_is_exact_and_the_step_previews_are_close_and_small():
    rng = np.random.default_rng(0)
    final = [stroke_picture(rng), stroke_picture(rng)]
    checkpoints = {step: [stroke_picture(rng), stroke_picture(rng)] for step in (0, 2, 4)}
    checkpoints[6] = [a.copy() for a in final]
    run = Result(config={"seeds": [0, 1], "objective": {"type": "neuron"}, "model": "m",
                         "preset": {"name": "robust"}}, model={"name": "m"}, images=final,
                 checkpoints=checkpoints, steps=list(range(7)), activation=[[0.0] * 7] * 2,
                 loss=[[0.0] * 7] * 2)
    archive = run.to_archive()
    loaded = Result.from_archive(archive)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.images, final))
    # The first checkpoint is an accentuated exemplar's photo, which its change is measured from.
    assert all(np.array_equal(a, b) for a, b in zip(loaded.checkpoints[0], checkpoints[0]))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.checkpoints[6], final))
    for step in (2, 4):
        for shown, exact in zip(loaded.checkpoints[step], checkpoints[step]):
            error = np.abs(shown.astype(float) - exact)
            # The fine noise alone is 10 levels on average: most of it survives.
            assert shown.shape == exact.shape and 0 < error.mean() < 8
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert not any(name.startswith("checkpoints/6/") for name in names), "final stored twice"
    # Every checkpoint as a PNG (format 1) took more room.
    assert len(archive) < 0.8 * len(format_1_archive(run))


def format_1_archive(run: Result) -> bytes:
    """The layout vitviz wrote until 2026-12-06: one PNG for every image and checkpoint."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("result.json", json.dumps(
            {**run.to_json(), "format": 1, "checkpoint_steps": sorted(run.checkpoints)}))
        for item, image in enumerate(run.images):
            archive.writestr(f"images/{item}.png", encode_png(image))
        for step, images in run.checkpoints.items():
            for item, image in enumerate(images):
                archive.writestr(f"checkpoints/{step}/{item}.png", encode_png(image))
    return buffer.getvalue()


def test_a_result_stored_in_the_earlier_layout_still_reads(tmp_path):
    stored = result()
    loaded = Result.from_archive(format_1_archive(stored))
    assert np.array_equal(loaded.images[0], stored.images[0])
    assert np.array_equal(loaded.checkpoints[2][0], stored.checkpoints[2][0])
    assert loaded.activation == stored.activation


def test_nothing_is_stored_as_a_pickle(tmp_path):
    ResultCache(tmp_path).put("k", result())
    with sqlite3.connect(tmp_path / "cache.db") as db:
        modes = db.execute("SELECT raw, mode FROM Cache").fetchall()
    assert modes and all(raw == 1 and mode != 4 for raw, mode in modes)


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PAYLOAD_MARK"]),))


def test_a_crafted_pickle_never_runs_and_the_store_is_moved_aside(tmp_path, monkeypatch):
    mark = tmp_path / "payload_ran"
    monkeypatch.setenv("PAYLOAD_MARK", str(mark))
    store = tmp_path / "cache"
    ResultCache(store).put("good", result())
    with sqlite3.connect(store / "cache.db") as db:  # what an attacker with file access writes
        db.execute("INSERT INTO Cache (key, raw, store_time, access_time, access_count, tag, "
                   "size, mode, filename, value) VALUES (?, 1, 0, 0, 0, NULL, 0, 4, NULL, ?)",
                   ("summary/evil", pickle.dumps(Payload())))
    cache = ResultCache(store)
    # The good result is carried over; the pickle never runs.
    assert list(cache.summaries()) == [config_key(result().config)] and not mark.exists()
    notices = cache.take_notices()
    assert len(notices) == 1 and "pickled" in notices[0]
    assert "1 finished result that could still be read was carried" in notices[0]
    assert cache.take_notices() == []  # reported once
    assert len(list(tmp_path.glob("cache.corrupt-*"))) == 1


def test_truncated_and_missing_value_files_cost_one_entry(tmp_path):
    cache = ResultCache(tmp_path)
    for seed in range(3):
        cache.put(f"k{seed}", result(seed))
    files = sorted(value_files(tmp_path), key=lambda p: p.stat().st_mtime)
    assert len(files) == 3
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])
    files[1].unlink()
    fresh = ResultCache(tmp_path)
    assert fresh.get("k0") is None and fresh.get("k1") is None
    assert fresh.get("k2") is not None
    assert list(fresh.summaries()) == ["k2"]  # the broken ones are gone, not listed forever
    assert len(fresh.take_notices()) == 2 and fresh.take_notices() == []


@pytest.mark.parametrize("damage", ["garbage", "empty"])
def test_a_damaged_store_is_moved_aside_and_a_fresh_one_started(tmp_path, damage):
    store = tmp_path / "cache"
    ResultCache(store).put("k", result())
    db = store / "cache.db"
    db.write_bytes(b"this is not a database" * 100 if damage == "garbage" else b"")
    cache = ResultCache(store)
    # Its result file is intact: carried into the fresh store under its config's key.
    assert list(cache.summaries()) == [config_key(result().config)]
    assert len(cache.take_notices()) == 1
    aside = list(tmp_path.glob("cache.corrupt-*"))
    assert len(aside) == 1 and value_files(aside[0])  # the old files are kept for inspection
    cache.put("k", result(1))
    assert sorted(ResultCache(store).summaries()) == sorted(["k", config_key(result().config)])


def test_a_damaged_index_loses_no_result_that_can_still_be_read(tmp_path):
    """Issue 33: the finished results of a store moved aside came back in no fresh store."""
    store = tmp_path / "cache"
    requests = [RunRequest(model="tiny_vit", objective=O.neuron(VIT_HIDDEN, unit).spec(),
                           seeds=(seed,), preset="naive", overrides={"steps": 3})
                for unit, seed in [(0, 0), (1, 0), (2, 5), (3, 7), (4, 1)]]
    stored = {}
    cache = ResultCache(store)
    for i, request in enumerate(requests):
        run = result(i, size=8 if i % 2 else 256)  # small ones too: every result is a file
        run.config = request.config()  # as compute_result stores it
        cache.put(request.key(), run)
        stored[request.key()] = run
    cache.close()
    files = value_files(store)
    assert len(files) == len(requests)
    damaged = files[0].read_bytes()
    files[0].write_bytes(damaged[: len(damaged) // 2])  # one result file damaged too
    db = store / "cache.db"
    with open(db, "r+b") as handle:  # the index overwritten in place: SQLite cannot read it
        handle.write(b"\xde\xad\xbe\xef" * (db.stat().st_size // 4))

    fresh = ResultCache(store)
    notices = fresh.take_notices()
    assert len(notices) == 1 and "moved to cache.corrupt-" in notices[0]
    assert "4 finished results that could still be read were carried" in notices[0]
    assert "1 entry that could not be read" in notices[0]
    found = {key for key in stored if fresh.get(key) is not None}
    assert len(found) == 4 and set(fresh.summaries()) == found
    for key in found:
        again = fresh.get(key)
        assert np.array_equal(again.images[0], stored[key].images[0])
        assert np.array_equal(again.checkpoints[2][0], stored[key].checkpoints[2][0])
        assert again.config == stored[key].config
    assert fresh.take_notices() == []
    # The next session reads the carried results from the fresh store, with no notice.
    assert set(ResultCache(store).summaries()) == found


def test_eviction_keeps_the_newest_and_the_recently_used(tmp_path):
    one = len(result(size=256).to_archive())
    cache = ResultCache(tmp_path, size_limit=int(3.5 * one) + 64 * 1024)
    for seed in range(3):
        cache.put(f"k{seed}", result(seed, size=256))
        time.sleep(0.01)
    cache.get("k0")  # used again: k1 is now the least recently used
    cache.put("k3", result(3, size=256))
    assert set(cache.summaries()) == {"k0", "k2", "k3"}
    tiny = ResultCache(tmp_path / "tiny", size_limit=1)  # every result is larger than the limit
    tiny.put("only", result(size=256))
    assert list(tiny.summaries()) == ["only"]  # the result just made is never evicted


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from vitviz.store.cache import ResultCache
with ResultCache({path!r}).computing("k"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_never_blocks_the_next(tmp_path, sig):
    root = str(Path(__file__).resolve().parents[1])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=root, path=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    acquired = threading.Event()

    def wait_for_lock():
        with ResultCache(tmp_path).computing("k"):
            acquired.set()

    waiter = threading.Thread(target=wait_for_lock, daemon=True)
    waiter.start()
    assert not acquired.wait(0.5)  # the lock excludes while its holder lives
    holder.send_signal(sig)
    holder.wait(10)
    assert acquired.wait(5)


def test_threads_of_one_server_exclude_each_other(tmp_path):
    inside, overlaps = [], []

    def work():
        with ResultCache(tmp_path).computing("k"):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [1, 1, 1, 1]


def test_a_damaged_entry_is_recomputed_by_the_next_run(tmp_path, tiny_vit):
    request = RunRequest(model="tiny_vit", objective=O.neuron(VIT_HIDDEN, 3).spec(), seeds=(0,),
                         preset="naive", overrides={"steps": 3})
    cache = ResultCache(tmp_path)
    cached_result(request, cache, loader=lambda name: tiny_vit)
    files = value_files(tmp_path)
    assert len(files) == 1  # a small archive too has its own file
    for path in files:
        path.write_bytes(b"PK\x03\x04 cut")
    again, hit = cached_result(request, ResultCache(tmp_path), loader=lambda name: tiny_vit)
    assert not hit and again.images[0].shape[-1] == 3
    assert ResultCache(tmp_path).get(request.key()) is not None


def test_carrying_results_out_of_a_damaged_store_goes_on_after_a_kill(tmp_path, monkeypatch):
    """The soak found it: a server stopped while it carried a damaged store's results left the
    rest in the moved-aside store, and the next start never looked there."""
    import vitviz.store.cache

    store = tmp_path / "cache"
    cache = ResultCache(store)
    for i in range(6):
        run = result(i)
        cache.put(config_key(run.config), run)
    cache.close()
    (store / "cache.db").write_bytes(b"this is not a database" * 100)
    real = vitviz.store.cache.salvage

    def killed_after_two(aside, fresh):
        carried = [0]

        def put_then_maybe_die(*args, **kwargs):
            fresh.__class__.set(fresh, *args, **kwargs)
            if args[0].startswith("summary/"):
                carried[0] += 1
                if carried[0] == 2:
                    raise KeyboardInterrupt  # what SIGTERM does mid-carry
        monkeypatch.setattr(fresh, "set", put_then_maybe_die)
        return real(aside, fresh)

    monkeypatch.setattr(vitviz.store.cache, "salvage", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        ResultCache(store)
    monkeypatch.setattr(vitviz.store.cache, "salvage", real)
    again = ResultCache(store)
    assert len(again.summaries()) == 6
    notices = again.take_notices()
    assert len(notices) == 1 and "had stopped" in notices[0], notices
    assert "6 finished results that could still be read were carried" in notices[0]
    assert not (store / "locks" / "carrying").exists()
    assert ResultCache(store).take_notices() == []  # carried once
