"""Reliability figures of the dashboard: sessions held at once, and a soak of random clicks and links.

    python bench/reliability.py --sessions 20 --soak-minutes 30 --json reliability.json

Serves `app.py` on the tiny random ViT with `streamlit run` and drives it with Debian's Chromium
(Playwright), as tests/test_browser.py does. Two parts:

- *sessions*: N browser tabs open the Optimise page on N different units and press Run at once;
  every one must end with its own finished run (they queue for the device one at a time).
- *soak*: for the given time, a tab opens a random page with random settings, half of them
  hostile (markdown and HTML, huge and negative numbers, unknown layers, run keys that do not
  exist) and presses the page's run button when there is one. Counted: actions, error boxes
  (expected for bad links), stack traces and "Unexpected error" boxes (must be 0), and the
  server's resident memory over time (must stay flat once warm).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_browser import (  # noqa: E402
    HIDDEN,
    browser_missing,
    chromium_page,
    page_url,
    streamlit_server,
    wait_until_idle,
)

PAGES = ["Optimise", "Compare_seeds", "Moving_target", "Runs", "Dataset_examples", ""]
HOSTILE = ["[Log in again](http://evil.example/login)", "![x](http://evil.example/p.png)",
           "`x` **b** <b>html</b> :red[alarm]", "9" * 309, "-5", "0", "nan", "1e400",
           "encoder.layers.encoder_layer_99.mlp.1", "'; DROP TABLE Cache; --"]
RUN_BUTTONS = re.compile(r"^(Run|Visualise|Find the examples|Measure)")


def resident_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (Linux /proc)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(child) for child in children)
        except OSError:
            continue
    return total / 1024


def random_params(rng: random.Random) -> dict:
    params = {"model": "tiny_vit", "layer": HIDDEN, "unit": rng.randrange(64),
              "steps": rng.randrange(2, 9), "seed": rng.randrange(4),
              "preset": rng.choice(["naive", "robust", "lucent"]), "seeds": rng.randrange(1, 4)}
    if rng.random() < 0.5:  # a hostile link: one to three values replaced
        for name in rng.sample(["layer", "unit", "steps", "seed", "preset", "seeds", "size",
                                "lr", "run", "tokens", "model"], rng.randrange(1, 4)):
            params[name] = rng.choice(HOSTILE)
    return params


def hold_sessions(base: str, count: int) -> dict:
    with chromium_page() as first:
        browser = first.context.browser
        pages = [browser.new_page(viewport={"width": 1280, "height": 900}) for _ in range(count)]
        started = time.perf_counter()
        for unit, page in enumerate(pages):
            page.goto(page_url(base, "Optimise", {"model": "tiny_vit", "layer": HIDDEN,
                                                  "unit": unit, "preset": "naive", "steps": 8}))
        for page in pages:
            page.get_by_role("button", name="Run", exact=True).click()
        finished = 0
        for page in pages:
            try:
                page.get_by_text("Computed just now").wait_for(timeout=300_000)
                finished += 1
            except Exception:  # a timeout is the figure being measured, not a crash
                pass
        return {"sessions": count, "finished": finished,
                "seconds": round(time.perf_counter() - started, 1)}


def soak(base: str, minutes: float, server_pid: int, seed: int) -> dict:
    rng = random.Random(seed)
    actions = error_boxes = unexpected = traces = runs = 0
    failures: list[dict] = []
    memory = [(0.0, resident_mb(server_pid))]
    started = time.perf_counter()
    with chromium_page() as page:
        while time.perf_counter() - started < minutes * 60:
            url = page_url(base, rng.choice(PAGES), random_params(rng))
            page.goto(url)
            try:
                page.locator("h1").first.wait_for(timeout=60_000)  # the script has started
                page.wait_for_timeout(300)
                wait_until_idle(page)
                button = page.get_by_role("button", name=RUN_BUTTONS)
                if button.count() and button.first.is_enabled():
                    button.first.click()
                    runs += 1
                    page.wait_for_timeout(500)
                    wait_until_idle(page, 120_000)
            except Exception:  # a page that does not settle counts as a trace below
                traces += 1
            actions += 1
            text = page.locator("[data-testid='stAlertContentError']").all_inner_texts()
            error_boxes += len(text)
            found = [t for t in text if "Unexpected error" in t]
            found += page.locator("[data-testid='stException']").all_inner_texts()
            unexpected += sum("Unexpected error" in t for t in text)
            traces += page.locator("[data-testid='stException']").count()
            failures += [{"url": url, "text": t[:500]} for t in found]
            elapsed = time.perf_counter() - started
            if elapsed - memory[-1][0] >= 30:
                memory.append((round(elapsed), resident_mb(server_pid)))
    memory.append((round(time.perf_counter() - started), resident_mb(server_pid)))
    warm = [mb for t, mb in memory if t >= 60] or [memory[-1][1]]
    return {"minutes": minutes, "actions": actions, "runs_started": runs,
            "error_boxes": error_boxes, "unexpected_errors": unexpected, "stack_traces": traces,
            "rss_mb": [(t, round(mb)) for t, mb in memory],
            "rss_growth_after_first_minute_mb": round(warm[-1] - warm[0]), "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--soak-minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--server-log", type=Path, help="keep the server's log here")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": f"{folder}/cache",
               "VITVIZ_CACHE_SIZE_LIMIT": str(64 * 2**20)}  # small, so eviction runs too
        processes: list = []
        log = args.server_log or Path(folder) / "server.log"
        with streamlit_server(env, log, processes=processes) as base:
            figures["sessions"] = hold_sessions(base, args.sessions)
            print(json.dumps(figures["sessions"]), flush=True)
            figures["soak"] = soak(base, args.soak_minutes, processes[0].pid, args.seed)
            print(json.dumps(figures["soak"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
