"""The dashboard's pages and its navigation.

Imports nothing but Streamlit: app.py runs this before any page imports torch and vitviz, which
takes seconds on a server's first page, so the menu and a loading message show at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
LOADING = "Loading vitviz… The first page after the server starts takes a few seconds."


@dataclass(frozen=True)
class PageInfo:
    """One dashboard page. Its file's stem is its URL path (`/Optimise`): see `ui.page.setup`."""

    file: str
    title: str
    icon: str
    blurb: str

    @property
    def path(self) -> str:
        # Absolute, so that st.page_link finds the page whichever script Streamlit started from.
        return str(ROOT / "pages" / self.file)

    @property
    def url_path(self) -> str:
        return "" if self.file == HOME.file else Path(self.file).stem


HOME = PageInfo("Home.py", "Home", ":material/home:", "")
PAGES = {
    "optimise": PageInfo(
        "Optimise.py", "Optimise", ":material/auto_awesome:",
        "Visualise one unit: pick a layer (★ marks the recommended ones), a unit and a method, "
        "and watch the image and its activation curve form."),
    "compare": PageInfo(
        "Compare_seeds.py", "Compare seeds", ":material/grid_view:",
        "Several seeds of one unit side by side, optionally for two methods: activation curves, "
        "and robust activation and rank measured on request."),
    "moving_target": PageInfo(
        "Moving_target.py", "Moving target", ":material/trending_up:",
        "How much of a ViT unit's gain comes from the patch content and how much from attention "
        "moving its context, naive vs robust."),
    "examples": PageInfo(
        "Dataset_examples.py", "Dataset examples", ":material/photo_library:",
        "The photos, crops and patches of the offline photo set that drive a unit most, next to "
        "its visualisation, with how strong and how specific that visualisation is."),
    "atlas": PageInfo(
        "Atlas.py", "Atlas", ":material/apps:",
        "A whole layer at a glance: every unit's picture, a page of units at a time, each linking "
        "to its own page; missing units computed in batches."),
    "runs": PageInfo(
        "Runs.py", "Runs", ":material/history:",
        "Browse the result cache shared by all sessions: reopen, export as PNG and JSON, delete."),
}

# Per script thread (a session's script runs on its own thread): whether app.py is running the
# page, and the loading message the page replaces when it starts drawing.
_route = threading.local()
# Set once a page of this server process has started drawing; until then a page run begins with
# seconds of imports. Later runs show no message: it would flicker above the page on every rerun.
_drawn = threading.Event()


def navigation():
    """Streamlit's navigation over HOME and PAGES; returns the page this run should show."""
    return st.navigation([
        st.Page(info.path, title=info.title, icon=info.icon, url_path=info.url_path or None,
                default=info is HOME)
        for info in (HOME, *PAGES.values())])


def run_app() -> None:
    """app.py's whole body: the page the URL names, inside the shared navigation."""
    page = navigation()
    loading = None
    if not _drawn.is_set():
        loading = st.empty()
        loading.info(LOADING, icon=":material/hourglass_top:")
    _route.through_app, _route.loading = True, loading
    try:
        page.run()
    finally:
        if _route.loading is not None:
            # The page failed before it drew: the message must not stay, announcing a page
            # that is not coming.
            _route.loading.empty()
        _route.through_app, _route.loading = False, None


def through_app() -> None:
    """Every page file's first line, before its imports of torch and vitviz.

    When Streamlit runs the page script itself, not through app.py: the first script run of a
    server whose app folder has a pages/ directory takes Streamlit's legacy route, which runs
    the file the URL names without app.py (streamlit#9992; AppTest takes it on every run).
    Widgets made there would get other ids than through app.py and lose their state on the next
    run, and the folder's automatic menu would show over a blank page for the seconds the
    imports take. So run the page as app.py does, in this same run (a button press is not
    lost), and end the outer run here. The URL paths are the file stems, so the navigation
    resolves to this page, and it turns the legacy route off for the server.
    """
    if not getattr(_route, "through_app", False):
        run_app()
        st.stop()


def page_started() -> None:
    """The page's heading is up: the loading message above it goes (not before, which would
    leave the page blank for a moment)."""
    loading = getattr(_route, "loading", None)
    if loading is not None:
        loading.empty()
        _route.loading = None
    _drawn.set()
