"""Objects shared by every session of the server: models, the result cache, the device queue."""
from __future__ import annotations

import atexit
import os
from pathlib import Path

import streamlit as st

from vitviz.cache import ResultCache, default_cache_dir
from vitviz.layers import layer_table
from vitviz.models import (MODELS, RANDOM_SUFFIX, LoadedModel, WeightsUnavailable, load_model,
                           load_user_models, parse_model_name, USER_MODELS_ENV)

from ui.queue import RunQueue


ALLOW_DOWNLOAD_ENV = "VITVIZ_ALLOW_DOWNLOAD"


def check_weights_present(name: str) -> None:
    """A link must not make the server download weights: only models whose weights are already
    here load, unless the operator sets VITVIZ_ALLOW_DOWNLOAD=1."""
    base, random_init = parse_model_name(name)
    if random_init or MODELS[base].available() or os.environ.get(ALLOW_DOWNLOAD_ENV) == "1":
        return
    raise WeightsUnavailable(
        f"The weights of '{base}' are not on this server, and the dashboard does not download "
        f"weights on a visitor's request. Run `python -m vitviz layers --model {base}` once "
        f"on a machine with internet (it fills torch hub's cache), or start the server with "
        f"{ALLOW_DOWNLOAD_ENV}=1. '{base}{RANDOM_SUFFIX}' needs no weights.")


@st.cache_resource(show_spinner=False)
def _user_models(files: str) -> list[str]:
    return load_user_models({USER_MODELS_ENV: files})


def user_models() -> list[str]:
    """The models the operator's $VITVIZ_MODELS files register, each file run once per server."""
    return _user_models(os.environ.get(USER_MODELS_ENV, ""))


@st.cache_resource(show_spinner="Loading the model (once per server)…", max_entries=4)
def get_model(name: str) -> LoadedModel:
    check_weights_present(name)
    model = load_model(name)
    # The layer table comes from a dry forward pass with hooks on every module. Made here, once,
    # it can never run while another session optimises on the same network.
    layer_table(model)
    return model


@st.cache_resource(show_spinner=False)
def _cache_at(path: str) -> ResultCache:
    return ResultCache(path)


# The project layout's runtime folder, beside app.py, when VITVIZ_CACHE_DIR does not say.
DASHBOARD_CACHE = Path(__file__).resolve().parents[1] / "cache"


def result_cache() -> ResultCache:
    """The dashboard's result cache, one instance per directory for the whole server."""
    return _cache_at(str(default_cache_dir(DASHBOARD_CACHE).resolve()))


@st.cache_resource(show_spinner=False)
def run_queue(max_concurrent: int) -> RunQueue:
    queue = RunQueue(max_concurrent)
    # On SIGTERM Streamlit stops its server and the interpreter exits; runs still inside torch
    # would abort the process. atexit runs before that: stop them and wait.
    atexit.register(queue.stop)
    return queue
