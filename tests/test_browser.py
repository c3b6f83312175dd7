"""End to end in a real browser: the dashboard served by `streamlit run`, driven by Debian's
Chromium through Playwright. Never downloads a browser; skips where Chromium or Playwright is
missing. The helpers are shared with tests/screenshots.py."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
HIDDEN = "encoder.layers.encoder_layer_1.mlp.1"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(env: dict[str, str], log: Path, timeout_s: float = 90,
                     processes: list | None = None) -> Iterator[str]:
    """`streamlit run app.py` on a free port; yields its base URL and stops it afterwards.

    The server's Popen is appended to `processes` when given (to signal it)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=output,
                                  stderr=subprocess.STDOUT)
        if processes is not None:
            processes.append(server)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {server.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.read() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not answer within {timeout_s} s; see {log}")
                time.sleep(0.5)
            yield url
        finally:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextmanager
def chromium_page(width: int = 1280, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def page_url(base: str, path: str, params: dict) -> str:
    return f"{base}/{path}?{urlencode(params)}"


def full_page_screenshot(page, path: Path) -> None:
    """Streamlit scrolls its main area, not the document: grow the viewport to show all of it."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
        "[data-testid=\"stMainBlockContainer\"]')].map(e => e.scrollHeight), 600)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": height + 40})
    page.wait_for_timeout(800)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def wait_until_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait for the script run to end: Streamlit shows a status widget while it runs."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


# Runs before the page's own scripts: each state of the sidebar menu and of the main area's text,
# recorded on every change of the page, so that a state that lasts a single frame cannot slip
# between two polls. Whoever reads the record calls vitvizRecord() first, so that its last state
# is the page as the test sees it.
RECORD_STATES = """
window.vitvizStates = [];
window.vitvizRecord = () => {
  const nav = [...document.querySelectorAll(
    '[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"] span[label]')]
    .map(label => label.getAttribute('label'));
  const main = document.querySelector('[data-testid="stMain"]');
  const state = {t: performance.now(), nav, main: main ? main.innerText.trim() : ''};
  const last = window.vitvizStates.at(-1);
  if (!last || last.nav.join('|') !== nav.join('|') || last.main !== state.main)
    window.vitvizStates.push(state);
  return window.vitvizStates;
};
new MutationObserver(window.vitvizRecord)
  .observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.browser
def test_a_cold_server_shows_the_menu_and_a_loading_message_at_once(tmp_path):
    """The first page of a fresh server used to show Streamlit's automatic menu of pages/
    ("app", "Atlas", ...) over a blank page for the seconds that importing torch and vitviz
    takes."""
    path, ready, heading = "", "Default model", "vitviz"
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from ui.navigation import HOME, LOADING, PAGES

    menu = [HOME.title, *(info.title for info in PAGES.values())]
    env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(env, tmp_path / "streamlit.log") as base, chromium_page() as page:
        page.add_init_script(RECORD_STATES)
        page.goto(f"{base}/{path}")
        # Exact: the info box below the metrics says "the default model" too.
        page.get_by_text(ready, exact=True).wait_for(timeout=60_000)
        wait_until_idle(page)
        states = page.evaluate("window.vitvizRecord()")

        with_menu = [state for state in states if state["nav"]]
        assert with_menu, "the sidebar never showed a menu"
        # Streamlit's first run on a server with a pages/ folder sends its automatic menu just
        # before app.py's own, in the same script run: on a loaded machine the browser may paint
        # it for a frame, never for the seconds of the imports.
        ours = next(index for index, state in enumerate(states) if state["nav"] == menu)
        foreign = [index for index, state in enumerate(states) if state["nav"] not in ([], menu)]
        assert all(index < ours for index in foreign), "another menu replaced the dashboard's"
        if foreign:
            shown_for = states[ours]["t"] - states[foreign[0]]["t"]
            assert shown_for < 250, f"Streamlit's automatic menu showed for {shown_for:.0f} ms"
        shown = [index for index, state in enumerate(states) if state["main"]]
        first = states[shown[0]]
        assert LOADING in first["main"] and ready not in first["main"], \
            f"the page first showed {first['main']!r}"
        # Within a second of the menu, or, on a machine so loaded that the imports take far
        # longer than their usual seconds, within a small share of the wait for the page.
        blank = first["t"] - with_menu[0]["t"]
        drawn = next(state["t"] for state in states if heading in state["main"].split("\n"))
        assert blank < max(1000, 0.2 * (drawn - with_menu[0]["t"])), \
            f"the loading message came {blank:.0f} ms after the menu"
        # From the loading message to the page drawn, the main area is never blank.
        assert shown == list(range(shown[0], len(states)))
        assert any(ready in state["main"] for state in states[shown[0]:])

        assert page.get_by_role("heading", name=heading).is_visible()
        assert page.get_by_text(LOADING).count() == 0
        assert page.locator("[data-testid='stException']").count() == 0


@pytest.mark.browser
def test_optimise_page_runs_and_reopens_from_the_cache(tmp_path):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": str(tmp_path / "cache")}
    params = {"model": "tiny_vit", "layer": HIDDEN, "unit": 5, "preset": "robust", "steps": 8}
    with streamlit_server(env, tmp_path / "streamlit.log") as base, chromium_page() as page:
        page.goto(page_url(base, "Optimise", params))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Computed just now").wait_for(timeout=60_000)
        image = page.locator("[data-testid='stMain'] [data-testid='stImage'] img").first
        image.wait_for(state="visible")
        assert page.evaluate("img => img.naturalWidth", image.element_handle()) > 0
        assert page.locator("[data-testid='stPlotlyChart']").count() >= 1
        assert page.locator("[data-testid='stException']").count() == 0
        wait_until_idle(page)
        full_page_screenshot(page, ARTIFACTS / "optimise.png")

        # The URL now carries every setting: opening it in a fresh session serves the cache.
        shared = page.url
        assert "unit=5" in shared and "steps=8" in shared
        fresh = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
        fresh.goto(shared)
        fresh.get_by_text("Served from the result cache").wait_for(timeout=30_000)
        assert fresh.get_by_role("button", name="Run", exact=True).count() == 0

        # Streamlit's navigation, titled: the first page load of a server takes Streamlit's
        # legacy pages/ route and the second goes through app.py; both must show it.
        for session in (page, fresh):
            nav = session.locator("[data-testid='stSidebarNav']")
            assert nav.get_by_text("Compare seeds", exact=True).count() == 1
            assert nav.get_by_text("Home", exact=True).count() == 1
        fresh.locator("[data-testid='stSidebarNav']").get_by_text("Runs", exact=True).click()
        fresh.get_by_role("heading", name="Runs").wait_for(timeout=30_000)
        assert fresh.url.split("?")[0].endswith("/Runs")


@pytest.mark.browser
def test_sigterm_during_a_run_stops_the_server_cleanly_and_frees_the_run(tmp_path):
    """What `docker stop` does: the server used to abort (exit code -6); the run it was computing
    must be computable again after a restart."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": str(tmp_path / "cache")}
    params = {"model": "tiny_vit", "layer": HIDDEN, "unit": 5, "preset": "naive", "steps": 2000}
    servers: list = []
    with streamlit_server(env, tmp_path / "first.log", processes=servers) as base, \
            chromium_page() as page:
        page.goto(page_url(base, "Optimise", params))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Step ").first.wait_for(timeout=60_000)
        servers[0].send_signal(signal.SIGTERM)
        assert servers[0].wait(timeout=30) == 0
    params["steps"] = 4  # a short run, then the long one again: neither may hang
    with streamlit_server(env, tmp_path / "second.log") as base, chromium_page() as page:
        page.goto(page_url(base, "Optimise", params))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Computed just now").wait_for(timeout=60_000)


@pytest.mark.browser
def test_an_exported_atlas_opens_from_disk_sorts_and_links_to_unit_pages(tmp_path):
    if browser_missing():
        pytest.skip(browser_missing())
    from vitviz.models.registry import load_model
    from vitviz.store.cache import ResultCache
    from vitviz.surveys.atlas import run_atlas
    from vitviz.surveys.atlas_site import export_atlas

    cache = ResultCache(tmp_path / "cache")
    list(run_atlas(load_model("tiny_vit", "cpu"), HIDDEN, range(6), cache, steps=4,
                   batch_units=6))
    export_atlas("tiny_vit", HIDDEN, range(8), cache, tmp_path / "site", steps=4)
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((tmp_path / "site" / "index.html").as_uri())
        assert page.locator(".cell").count() == 8 and page.locator(".cell img").count() == 6
        assert page.locator(".missing").count() == 2
        page.select_option("#order", "robust")
        labels = page.locator(".fig").all_inner_texts()
        values = [float(text.rstrip("x")) for text in labels]
        assert values == sorted(values, reverse=True)
        page.select_option("#show", "missing")
        assert page.locator(".cell").count() == 2
        page.select_option("#show", "all")
        full_page_screenshot(page, ARTIFACTS / "atlas_site.png")
        page.locator(".cell a").first.click()
        page.wait_for_load_state()
        assert "/unit/" in page.url and page.locator("h1").inner_text().startswith("unit ")
        assert page.locator("img").first.evaluate("i => i.naturalWidth") > 0
        assert errors == []


# What a visitor can put in a link: bare URLs, `www.` names and e-mail addresses (which Streamlit's
# markdown links even when escaped), icon and image shortcodes (`:material/home:`, `:streamlit:`,
# also drawn when escaped), and markdown or HTML links, images and directives.
INERT_PAYLOADS = [
    "see http://host/x now", "http://evil.example/login", "https://evil.example/a?b=c&d=e",
    "HTTPS://EVIL.EXAMPLE/X", "(http://evil.example)", "see http://127.0.0.1:8501/x now",
    "http://[::1]/x", "x:http://evil.example", "<http://evil.example>", "<https://evil.example>",
    "http:\\/\\/evil.example", "www.evil.example", "see www.evil.example/login now",
    "WWW.EVIL.EXAMPLE", "(www.evil.example)", "someone@evil.example",
    "see first.last+tag@evil.example now", "<someone@evil.example>",
    "mailto:someone@evil.example", "xmpp:someone@evil.example/home",
    "[Log in again](http://evil.example/login)", "![x](http://evil.example/p.png)",
    "[x][1] [1]: http://evil.example", "[x](javascript:alert(1))", "[www.evil.example]()",
    '<a href="http://evil.example">click</a>', "<img src=x onerror=alert(1)>",
    "`x` **bold** <b>html</b> :red[alarm]", ":material/link: http://evil.example",
    ":streamlit: :material/home: :smile: :rainbow[x]",
    "$x$ https://evil.example", "h&#116;tp://evil.example &lt;b&gt;",
]


@pytest.mark.browser
def test_values_from_a_link_are_inert_text_in_the_error_box(tmp_path):
    """Issue 33: `?layer=see http://host/x now` showed a clickable URL in the error box (also
    `www.` names and e-mail addresses), though every markdown character was escaped."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    env = {"VITVIZ_MODEL": "tiny_vit", "VITVIZ_CACHE_DIR": str(tmp_path / "cache")}
    linked, altered = [], []
    with streamlit_server(env, tmp_path / "streamlit.log") as base, chromium_page() as page:
        for payload in INERT_PAYLOADS:
            page.goto(page_url(base, "Optimise", {"model": "tiny_vit", "layer": payload}))
            box = page.locator("[data-testid='stMain'] [data-testid='stAlert']").filter(
                has_text="is not a module")
            box.first.wait_for(timeout=60_000)
            wait_until_idle(page)
            # No link, image or markup of any kind inside the box...
            found = {tag: box.locator(tag).count() for tag in ("a", "img", "svg", "iframe", "b",
                                                               "code", "span[role='img']")}
            if any(found.values()):
                linked.append((payload, {tag: n for tag, n in found.items() if n}))
            # ...and the visitor reads the value as typed (the word joiners are invisible).
            if payload not in box.first.inner_text().replace("\u2060", ""):
                altered.append((payload, box.first.inner_text()))
        assert page.locator("[data-testid='stException']").count() == 0
    assert linked == [] and altered == [], f"{len(linked)} of {len(INERT_PAYLOADS)} payloads " \
        f"rendered markup: {linked}; shown altered: {altered}"
