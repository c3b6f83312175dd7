"""How long the server spends on a link to a cached run, and whether it loads the model.

    python bench/links.py                     # dinov2_vits14, the Optimise page
    python bench/links.py --model tiny_vit --opens 20

Computes one short run into a cache of its own, opens its link once (which stores the model's
card), then clears Streamlit's resource caches (a restarted server) and opens the link again
in fresh sessions: the first open reads the card from disk, the others from memory. Times are
the page script's run on its script thread (the server's time), beside AppTest's whole call
(which adds building and parsing the element tree); model loads are counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--opens", type=int, default=10)
    args = parser.parse_args()
    os.environ["VITVIZ_CACHE_DIR"] = tempfile.mkdtemp(prefix="vitviz-links-")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui.resources
    from ui.settings import optimise_request, to_query
    from vitviz.models.layers import default_layer
    from vitviz.models.registry import load_model
    from vitviz.store.runs import cached_result

    model = load_model(args.model)
    settings = {"model": args.model, "layer": default_layer(model), "kind": "neuron", "unit": 3,
                "tokens": "patch", "preset": "naive", "lr": 0.05, "ensemble": 1, "tv": 0.0,
                "seed": 0, "steps": 2, "size": model.preprocessing.size}
    cached_result(optimise_request(settings, model.preprocessing.size),
                  ui.resources.result_cache(), loader=lambda _: model)
    link = {name: to_query(value) for name, value in settings.items()}

    script_seconds: list[float] = []
    thread_run = threading.Thread.run

    def timed_run(thread: threading.Thread) -> None:
        # The page script's own thread, not Streamlit's one-off start-up work (its component
        # manifest scan runs on other threads during the first run of a process).
        script = getattr(getattr(thread, "_target", None), "__name__", "") == "_run_script_thread"
        start = time.perf_counter()
        try:
            thread_run(thread)
        finally:
            if script:
                script_seconds.append(time.perf_counter() - start)

    threading.Thread.run = timed_run  # AppTest runs the page script on a thread of its own

    def open_link() -> tuple[float, float, AppTest]:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params.update(link)
        at.switch_page("pages/Optimise.py")
        script_seconds.clear()
        start = time.perf_counter()
        at.run()
        return sum(script_seconds), time.perf_counter() - start, at

    first, _, at = open_link()
    assert not at.exception and "Served from the result cache" in "\n".join(
        c.value for c in at.caption), "the link did not open the cached run"
    loads = []
    real = ui.resources.load_model
    ui.resources.load_model = lambda name: loads.append(name) or real(name)
    st.cache_resource.clear()
    opens = [open_link() for _ in range(args.opens)]
    times, calls = [o[0] for o in opens], [o[1] for o in opens]
    print(f"# {args.model}, Optimise page, a cached {settings['preset']} run; server time is the "
          "page script's run")
    print(f"first open on a fresh server (stores the card, loads the model): {first * 1e3:.0f} ms")
    print(f"after a restart: first open {times[0] * 1e3:.0f} ms (card from disk), then median "
          f"{statistics.median(times[1:]) * 1e3:.0f} ms over {len(times) - 1} sessions "
          f"(min {min(times[1:]) * 1e3:.0f}, max {max(times[1:]) * 1e3:.0f}); AppTest's whole "
          f"call median {statistics.median(calls) * 1e3:.0f} ms; model loads: {len(loads)}")


if __name__ == "__main__":
    main()
