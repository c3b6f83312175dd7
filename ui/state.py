"""A page's settings, kept in the URL so that a link reopens the same run.

On a page's first run in a session, each widget's state is seeded from the query parameters
(or, when the URL has none of this page's parameters, from the settings this session last used
on the page: Streamlit drops query parameters when the user switches pages). After the widgets
have run, `publish` writes their values back to the URL.

Streamlit's own `bind="query-params"` is not used: it drops an invalid parameter silently (a
mistyped layer must produce an error naming the close matches) and leaves defaults out of the
URL, so a link would depend on the defaults of whichever server opens it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

from ui.settings import SCHEMAS, to_query

if TYPE_CHECKING:
    from ui.limits import Limits

# The link's parameters that size a run, and the limit (ui.limits.Limits.problem) each meets.
LINK_SIZES = {"steps": "steps", "size": "size", "seeds": "batch"}


class PageState:
    def __init__(self, page: str):
        self.page = page
        self.schema = SCHEMAS[page]
        self.problems: list[str] = []
        self.values: dict[str, Any] = {}
        url = {name: st.query_params[name] for name in st.query_params if name in self.schema}
        self.incoming: dict[str, str] = url or st.session_state.get(self._memory, {})

    @property
    def _memory(self) -> str:
        return f"{self.page}.__settings"

    def key(self, name: str) -> str:
        return f"{self.page}.{name}"

    def wanted(self, name: str) -> Any:
        """The incoming value of `name`, parsed; None if absent or malformed (and then noted)."""
        raw = self.incoming.get(name)
        if raw is None:
            return None
        try:
            return self.schema[name](raw)
        except ValueError as error:
            self.problems.append(f"Link parameter `{name}={raw}` {error}; the default is used.")
            return None

    def hold_to(self, limits: "Limits") -> None:
        """Check the link's sizes against the server's limits before anything is loaded: a link
        asking for too much gets the default for it, and a message, without the page loading a
        model first to find out."""
        for name, size in LINK_SIZES.items():
            if name not in self.schema or name not in self.incoming:
                continue
            try:
                problem = limits.problem(size, self.schema[name](self.incoming[name]))
            except ValueError:  # malformed: said once, where the widget reads it (`wanted`)
                continue
            if problem:
                self.problems.append(f"Link parameter `{name}={self.incoming[name]}`: "
                                     f"{problem[:-1]}; the default is used.")
                self.incoming = {k: v for k, v in self.incoming.items() if k != name}

    def seed(self, name: str, default: Any, scope: str | None = None,
             from_url: bool = True) -> str:
        """Give the widget for `name` its first value (from the URL, else `default`); its key.

        A scoped widget keeps one value per scope, e.g. the learning rate per preset, so that
        switching presets shows each preset's own default; the URL value only seeds the scope
        the URL was made in (`from_url`).
        """
        key = self.key(name if scope is None else f"{name}.{scope}")
        if key not in st.session_state:
            wanted = self.wanted(name) if from_url else None
            st.session_state[key] = default if wanted is None else wanted
        return key

    def keep(self, name: str, value: Any) -> Any:
        self.values[name] = value
        return value

    def publish(self) -> None:
        query = {name: to_query(value) for name, value in self.values.items()}
        if {name: st.query_params[name] for name in st.query_params} != query:
            st.query_params.from_dict(query)
        # The model is left out: it follows the session's current choice (see ui.widgets).
        st.session_state[self._memory] = {k: v for k, v in query.items() if k != "model"}
