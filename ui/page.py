"""Page frame: configuration, navigation, and errors shown as messages, never as stack traces."""
from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import streamlit as st

from vitviz import __version__
from vitviz.errors import UserError

from ui.resources import result_cache, user_models
from ui.state import PageState

log = logging.getLogger("vitviz.app")

# Column widths of the settings panels: model, layer (long names), then two narrow columns.
SETTINGS_GRID = [1.4, 2.4, 1, 1]
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PageInfo:
    """One dashboard page. Its file's stem is its URL path (`/Optimise`): see `setup`."""

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
# page.
_route = threading.local()


def navigation():
    """Streamlit's navigation over HOME and PAGES; returns the page this run should show."""
    return st.navigation([
        st.Page(info.path, title=info.title, icon=info.icon, url_path=info.url_path or None,
                default=info is HOME)
        for info in (HOME, *PAGES.values())])


def run_app() -> None:
    """app.py's whole body: the page the URL names, inside the shared navigation."""
    page = navigation()
    _route.through_app = True
    try:
        page.run()
    finally:
        _route.through_app = False


def setup(page: str, caption: str) -> PageState:
    """Wide layout, navigation, title, caption; the page's settings, read from the URL."""
    if not getattr(_route, "through_app", False):
        # Streamlit ran this page script itself. The first script run of a server whose app
        # folder has a pages/ directory takes Streamlit's legacy route, which runs the file the
        # URL names without app.py (streamlit#9992; AppTest takes it on every run). Widgets
        # made there would get other ids than through app.py and lose their state on the next
        # run. So run the page as app.py does, in this same run (a button press is not lost),
        # and end the outer run here. The URL paths are the file stems, so the navigation
        # resolves to this page, and it turns the legacy route off for the server.
        run_app()
        st.stop()
    info = HOME if page == "home" else PAGES[page]
    st.set_page_config(page_title=f"{info.title} · vitviz", page_icon=":material/visibility:",
                       layout="wide")
    st.sidebar.caption(f"Feature visualisation for Vision Transformers · vitviz {__version__}")
    st.title("vitviz" if page == "home" else info.title)
    st.caption(caption)
    with reported():
        user_models()  # before any picker lists the models
    return PageState(page)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def as_text(message: str) -> str:
    """`message` for st.error and friends, with every markdown character escaped.

    Messages quote values from links (`?layer=...`): unescaped, a crafted link would render a
    link or an image inside the error box, or break out of a code span.
    """
    return _MARKDOWN.sub(r"\\\1", message)


def show_error(message: str) -> None:
    st.error(as_text(message), icon=":material/error:")


@contextmanager
def reported() -> Iterator[None]:
    """Show an exception of the block as an error message and carry on with the page.

    Streamlit's own control flow (st.stop, st.rerun) derives from BaseException and passes.
    """
    try:
        yield
    except UserError as error:
        show_error(str(error))
    except Exception as error:
        log.exception("unexpected error in a page")
        show_error(f"Unexpected error ({type(error).__name__}): {error}. The details are in the "
                   "server log.")
    show_cache_notices()


def show_cache_notices() -> None:
    """What the result cache found wrong while this page ran (damaged entries, a store moved
    aside), shown once, to the session that found it."""
    for text in result_cache().take_notices():
        st.warning(as_text(text), icon=":material/warning:")
