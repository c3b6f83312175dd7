"""Page frame: configuration, navigation, and errors shown as messages, never as stack traces."""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from ui.navigation import HOME, PAGES, page_started
from ui.resources import result_cache, user_models
from ui.state import PageState
from vitviz import __version__
from vitviz.errors import UserError

log = logging.getLogger("vitviz.app")

# Column widths of the settings panels: model, layer (long names), then two narrow columns.
SETTINGS_GRID = [1.4, 2.4, 1, 1]


def setup(page: str, caption: str) -> PageState:
    """Wide layout, navigation, title, caption; the page's settings, read from the URL."""
    info = HOME if page == "home" else PAGES[page]
    st.set_page_config(page_title=f"{info.title} · vitviz", page_icon=":material/visibility:",
                       layout="wide")
    st.sidebar.caption(f"Feature visualisation for Vision Transformers · vitviz {__version__}")
    st.title("vitviz" if page == "home" else info.title)
    st.caption(caption)
    with reported():
        user_models()  # before any picker lists the models
    page_started()
    return PageState(page)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
# Streamlit's markdown finds some patterns in the text after parsing, so escaping does not stop
# them: bare URLs, `www.` names and e-mail addresses become links (GFM), `:material/home:` an
# icon and `:streamlit:` an image. An invisible word joiner inside each pattern breaks it:
# "http:<WJ>//host", "www<WJ>.host", "name@<WJ>host", ":<WJ>streamlit:<WJ>". The visitor reads
# the same text.
_AUTOLINK = re.compile(r"(?<=:)(?=//|[\w/+-]+:)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def as_text(message: str) -> str:
    """`message` for st.error and friends, shown as inert text: every markdown character
    escaped (`&` too: no HTML entity), and no URL, `www.` name, e-mail address or `:shortcode:`
    left for the renderer to link or draw.

    Messages quote values from links (`?layer=...`): unescaped, a crafted link would render a
    link or an image inside the error box, or break out of a code span.
    """
    return _MARKDOWN.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, message))


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
