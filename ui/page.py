"""Page frame: configuration, navigation, and errors shown as messages, never as stack traces."""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import streamlit as st

from vitviz import __version__
from vitviz.errors import UserError

from ui.resources import result_cache, user_models

log = logging.getLogger("vitviz.app")

# Column widths of the settings panels: model, layer (long names), then two narrow columns.
SETTINGS_GRID = [1.4, 2.4, 1, 1]


@dataclass(frozen=True)
class PageInfo:
    path: str
    title: str
    icon: str
    blurb: str


HOME = PageInfo("app.py", "Home", ":material/home:", "")
PAGES = {
    "optimise": PageInfo(
        "pages/1_Optimise.py", "Optimise", ":material/auto_awesome:",
        "Visualise one unit: pick a layer (★ marks the recommended ones), a unit and a method, "
        "and watch the image and its activation curve form."),
    "compare": PageInfo(
        "pages/2_Compare_seeds.py", "Compare seeds", ":material/grid_view:",
        "Several seeds of one unit side by side, optionally for two methods: activation curves, "
        "and robust activation and rank measured on request."),
    "moving_target": PageInfo(
        "pages/3_Moving_target.py", "Moving target", ":material/trending_up:",
        "How much of a ViT unit's gain comes from the patch content and how much from attention "
        "moving its context, naive vs robust."),
    "examples": PageInfo(
        "pages/5_Dataset_examples.py", "Dataset examples", ":material/photo_library:",
        "The photos, crops and patches of the offline photo set that drive a unit most, next to "
        "its visualisation, with how strong and how specific that visualisation is."),
    "runs": PageInfo(
        "pages/4_Runs.py", "Runs", ":material/history:",
        "Browse the result cache shared by all sessions: reopen, export as PNG and JSON, delete."),
}


def setup(page: str, caption: str) -> None:
    """Wide layout, the sidebar navigation (titled pages instead of file names), title, caption."""
    info = HOME if page == "home" else PAGES[page]
    st.set_page_config(page_title=f"{info.title} · vitviz", page_icon=":material/visibility:",
                       layout="wide")
    with st.sidebar:
        st.markdown("## vitviz")
        for target in (HOME, *PAGES.values()):
            st.page_link(target.path, label=target.title, icon=target.icon)
        st.caption(f"Feature visualisation for Vision Transformers · vitviz {__version__}")
    st.title("vitviz" if page == "home" else info.title)
    st.caption(caption)
    with reported():
        user_models()  # before any picker lists the models


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
