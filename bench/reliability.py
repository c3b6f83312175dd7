"""Reliability figures of the dashboard: sessions held at once, a soak of random clicks and
hostile links, and faults injected into a live server.

    python bench/reliability.py --sessions 20 --soak-minutes 30 --json reliability.json

Serves `app.py` on the tiny random ViT with `streamlit run`, as a hosted demo does (it serves
only tiny_vit and tiny_cnn: VITVIZ_MODELS_ALLOWED), and drives it with Debian's Chromium
(Playwright), as tests/test_browser.py does. Three parts:

- *sessions*: N browser tabs open the Optimise page on N different units and press Run at once;
  every one must end with its own finished run (they queue for the device one at a time).
- *soak*: for the given time, a tab opens a random page with random settings, half of them
  hostile (markdown and HTML, huge and negative numbers, unknown layers, run keys that do not
  exist, models the server does not serve, untrained giants, unit ranges of 10^8, URLs, `www.`
  names and e-mail addresses) and presses the page's run button when there is one. Counted:
  actions, error boxes (expected for bad links), stack traces and "Unexpected error" boxes,
  links, images or markup inside an error box (each must be 0), and the server's resident
  memory over time (must stay flat once warm: a link never loads a model it does not serve).
- *faults*: the machine's CPU slot held by another process while a visitor presses Run (the
  page must say what it waits for), the server killed (SIGKILL) in the middle of a run and
  started again, the store's index overwritten with garbage and the server started again, a
  photo folder of unreadable files indexed twice, and every bad input of the CLI test. Counted:
  faults injected, results stored before each and found after (results lost must be 0).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_browser import (  # noqa: E402
    HIDDEN,
    INERT_PAYLOADS,
    browser_missing,
    chromium_page,
    page_url,
    streamlit_server,
    wait_until_idle,
)
from test_cli import BAD_INPUTS  # noqa: E402
from test_index import write_images, write_unreadable  # noqa: E402

PAGES = ["Optimise", "Compare_seeds", "Moving_target", "Runs", "Dataset_examples", "Atlas", ""]
SERVED = "tiny_vit tiny_cnn"
HOSTILE = [*INERT_PAYLOADS, "9" * 309, "-5", "0", "nan", "1e400", "0-99999999", "10" * 9,
           "encoder.layers.encoder_layer_99.mlp.1", "'; DROP TABLE Cache; --",
           "vit_l_16:random", "vit_b_16:random", "resnet50:random", "vit_b_16"]
RUN_BUTTONS = re.compile(r"^(Run|Visualise|Find the examples|Measure|Compute)")
ERROR_BOX = "[data-testid='stAlertContentError']"
MARKUP = ", ".join(f"{ERROR_BOX} {tag}" for tag in ("a", "img", "svg", "iframe", "b", "code"))


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
                                "lr", "run", "tokens", "model", "start"], rng.randrange(1, 4)):
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
    actions = error_boxes = unexpected = traces = runs = markup = 0
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
            markup += page.locator(MARKUP).count()
            text = page.locator(ERROR_BOX).all_inner_texts()
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
            "markup_in_error_boxes": markup,
            "rss_mb": [(t, round(mb)) for t, mb in memory],
            "rss_growth_after_first_minute_mb": round(warm[-1] - warm[0]), "failures": failures}


CPU_WAIT_WORDS = "Waiting for another run on this machine's CPU"


def stored_keys(cache_dir: Path) -> set[str]:
    """The keys of the finished runs a store holds (opening it as the server would, so a
    damaged one is moved aside and salvaged here too)."""
    from vitviz.store.cache import ResultCache

    cache = ResultCache(cache_dir)
    try:
        return set(cache.summaries())
    finally:
        cache.close()


def press_run(page, base: str, unit: int, steps: int) -> None:
    page.goto(page_url(base, "Optimise", {"model": "tiny_vit", "layer": HIDDEN, "unit": unit,
                                          "preset": "naive", "steps": steps}))
    page.get_by_role("button", name="Run", exact=True).click()


def held_cpu_slot(base: str) -> dict:
    """Another process holds the machine's CPU slot while a visitor presses Run."""
    import filelock

    from vitviz.common.cpu_slot import lock_path

    lock = filelock.FileLock(lock_path())  # under $VITVIZ_HOME, the server's home (main)
    lock.acquire()
    try:
        with chromium_page() as page:
            press_run(page, base, unit=60, steps=8)
            try:
                page.get_by_text(CPU_WAIT_WORDS).first.wait_for(timeout=120_000)
                told = True
            except Exception:  # the figure being measured: the visitor was not told
                told = False
            lock.release()
            page.get_by_text("Computed just now").wait_for(timeout=300_000)
            return {"fault": "CPU slot held by another process", "visitor_told": told,
                    "run_finished_after": True}
    finally:
        if lock.is_locked:
            lock.release()


def killed_mid_run(env: dict, folder: Path, cache_dir: Path) -> dict:
    """SIGKILL the server in the middle of a long run; start it again on the same store."""
    before = stored_keys(cache_dir)
    processes: list = []
    with streamlit_server(env, folder / "kill.log", processes=processes) as base:
        with chromium_page() as page:
            press_run(page, base, unit=61, steps=2000)
            page.get_by_text(re.compile(r"Step \d+/2000")).first.wait_for(timeout=120_000)
            processes[0].kill()
            processes[0].wait()
    started = time.perf_counter()
    with streamlit_server(env, folder / "restart.log") as base, chromium_page() as page:
        back_s = time.perf_counter() - started
        press_run(page, base, unit=61, steps=8)  # the killed run's unit: no stale lock left
        page.get_by_text("Computed just now").wait_for(timeout=300_000)
    after = stored_keys(cache_dir)
    return {"fault": "server killed mid-run", "results_before": len(before),
            "results_lost": len(before - after), "restart_s": round(back_s, 1),
            "killed_unit_ran_again": True}


def damaged_index(env: dict, folder: Path, cache_dir: Path) -> dict:
    """Garbage over the store's SQLite index between two runs of the server."""
    before = stored_keys(cache_dir)
    database = cache_dir / "cache.db"
    with open(database, "r+b") as index:
        index.write(os.urandom(8192))
    with streamlit_server(env, folder / "damaged.log") as base, chromium_page() as page:
        page.goto(page_url(base, "Runs", {}))
        try:
            page.get_by_text("carried into it").first.wait_for(timeout=120_000)
            told = True
        except Exception:  # the figure being measured: the visitor was not told
            told = False
    after = stored_keys(cache_dir)
    return {"fault": "store index overwritten", "results_before": len(before),
            "results_lost": len(before - after), "visitor_told": told}


def unreadable_photos(folder: Path) -> dict:
    """`vitviz index` over a folder with a decompression bomb, a truncated JPEG, a zero-byte
    file and text named .jpg, twice: both runs must finish, skipping and counting them."""
    photos = folder / "photos"
    write_images(photos, 0, 6)
    write_unreadable(photos)
    finished = 0
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "vitviz", "index", "--model", "tiny_vit", "--layers", HIDDEN,
             "--photos", str(photos), "--index-dir", str(folder / "index")],
            capture_output=True, text=True, cwd=ROOT, timeout=600)
        finished += done.returncode == 0 and "skipped (" in done.stderr
    return {"fault": "unreadable photos indexed twice", "files": 4, "runs_finished": finished}


def bad_cli_inputs(folder: Path) -> dict:
    """Every bad input of tests/test_cli.py, in one process: one line each, exit 2, no files."""
    from vitviz.cli import main

    clean = 0
    for case, (arguments, words) in BAD_INPUTS.items():
        work = folder / "cli" / re.sub(r"\W+", "_", case)
        (work / "tmp").mkdir(parents=True)
        (work / "cache").mkdir()
        (work / "file").write_text("not a folder")
        argv = [a.replace("{file}", str(work / "file")).replace("{tmp}", str(work / "tmp"))
                .replace("{cache}", str(work / "cache")) for a in arguments]
        said = StringIO()
        with redirect_stderr(said):
            code = main(argv)
        lines = said.getvalue().strip().splitlines()
        clean += (code == 2 and len(lines) == 1 and words in lines[0]
                  and not any((work / "tmp").iterdir()))
    return {"fault": "bad CLI inputs", "tried": len(BAD_INPUTS), "one_line_exit_2": clean}


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
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        cache_dir, home = folder / "cache", folder / "home"
        env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": str(cache_dir),
               "VITVIZ_HOME": str(home), "VITVIZ_MODELS_ALLOWED": SERVED,
               "VITVIZ_CACHE_SIZE_LIMIT": str(64 * 2**20)}  # small, so eviction runs too
        os.environ["VITVIZ_HOME"] = str(home)  # this process's CPU slot is the server's
        processes: list = []
        log = args.server_log or folder / "server.log"
        with streamlit_server(env, log, processes=processes) as base:
            figures["sessions"] = hold_sessions(base, args.sessions)
            print(json.dumps(figures["sessions"]), flush=True)
            figures["soak"] = soak(base, args.soak_minutes, processes[0].pid, args.seed)
            print(json.dumps(figures["soak"]), flush=True)
            figures["faults"] = [held_cpu_slot(base)]
            print(json.dumps(figures["faults"][-1]), flush=True)
        for inject in (lambda: killed_mid_run(env, folder, cache_dir),
                       lambda: damaged_index(env, folder, cache_dir),
                       lambda: unreadable_photos(folder), lambda: bad_cli_inputs(folder)):
            figures["faults"].append(inject())
            print(json.dumps(figures["faults"][-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
