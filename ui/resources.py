"""Objects shared by every session of the server: models, the result cache, the device queue."""
from __future__ import annotations

import streamlit as st

from vitviz.cache import ResultCache, default_cache_dir
from vitviz.layers import layer_table
from vitviz.models import LoadedModel, load_model

from ui.queue import RunQueue


@st.cache_resource(show_spinner="Loading the model (once per server)…", max_entries=4)
def get_model(name: str) -> LoadedModel:
    model = load_model(name)
    # The layer table comes from a dry forward pass with hooks on every module. Made here, once,
    # it can never run while another session optimises on the same network.
    layer_table(model)
    return model


@st.cache_resource(show_spinner=False)
def _cache_at(path: str) -> ResultCache:
    return ResultCache(path)


def result_cache() -> ResultCache:
    """The cache under VITVIZ_CACHE_DIR, one instance per directory for the whole server."""
    return _cache_at(str(default_cache_dir().resolve()))


@st.cache_resource(show_spinner=False)
def run_queue(max_concurrent: int) -> RunQueue:
    return RunQueue(max_concurrent)
