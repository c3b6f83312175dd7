"""Objects shared by every session of the server: models, the result cache, the device queue."""
from __future__ import annotations

import atexit
import json
import os
import weakref
from pathlib import Path

import streamlit as st
import torch
import torchvision

from ui.limits import load_limits
from ui.queue import RunQueue
from vitviz import __version__
from vitviz.common.hashing import config_key
from vitviz.models.layers import ModelCard, layer_table
from vitviz.models.loaded import (
    ALLOW_DOWNLOAD_ENV,
    RANDOM_SUFFIX,
    LoadedModel,
    WeightsUnavailable,
    downloads_allowed,
)
from vitviz.models.registry import MODELS, load_model, model_weights, parse_model_name
from vitviz.models.user_models import USER_MODELS_ENV, load_user_models
from vitviz.store.cache import ResultCache, default_cache_dir


def check_served(name: str) -> None:
    """What a link may make this server load: a model the operator serves (`Limits.serves`),
    whose weights are here. Checked before anything of the model is read or loaded."""
    load_limits().check_model(name)
    check_weights_present(name)


def served_models() -> list[str]:
    """The registered models (base names) this server serves, trained or untrained."""
    limits = load_limits()
    return [base for base, spec in MODELS.items()
            if limits.serves(base) or (spec.allows_random and limits.serves(base + RANDOM_SUFFIX))]


def check_weights_present(name: str) -> None:
    """A link must not make the server download weights: only models whose weights are already
    here load, unless the operator sets VITVIZ_ALLOW_DOWNLOAD=1."""
    base, random_init = parse_model_name(name)
    spec = MODELS[base]
    if random_init or spec.available() or downloads_allowed():
        return
    if spec.missing is not None:  # a library's cache: the spec says where, and the way out
        raise WeightsUnavailable(spec.missing())
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


# The models get_model holds, by name, without keeping one alive after Streamlit evicts it.
_LOADED: "weakref.WeakValueDictionary[str, LoadedModel]" = weakref.WeakValueDictionary()


def get_model(name: str) -> LoadedModel:
    """The model, loaded once per server; only one this server serves (checked every time: the
    operator may change the list while the model is held)."""
    check_served(name)
    return _get_model(name)


@st.cache_resource(show_spinner="Loading the model (once per server)…", max_entries=4)
def _get_model(name: str) -> LoadedModel:
    model = load_model(name)
    # The layer table comes from a dry forward pass with hooks on every module. Made here, once,
    # it can never run while another session optimises on the same network.
    layer_table(model)
    _LOADED[name] = model
    return model


def loaded_model(name: str) -> LoadedModel | None:
    """The model if this server has it loaded already; None rather than loading it."""
    return _LOADED.get(name)


def _card_path(name: str) -> Path:
    """Where the card of `name` is kept: named by everything a layer table depends on."""
    key = config_key({"model": name, "weights": model_weights(name), "vitviz": __version__,
                      "torch": torch.__version__, "torchvision": torchvision.__version__})
    return result_cache().path / "cards" / f"{key}.json"


@st.cache_resource(show_spinner=False, max_entries=32)
def _card(name: str, path: str) -> ModelCard:
    stored = Path(path)
    try:
        return ModelCard.from_json(json.loads(stored.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: made again from the model, and written whole
    card = ModelCard.of(get_model(name))
    stored.parent.mkdir(parents=True, exist_ok=True)
    partial = stored.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(card.to_json()))
    partial.replace(stored)
    return card


def model_card(name: str) -> ModelCard:
    """What the pages need to draw their settings and check a request, without the network.

    From memory, else from the card stored beside the result cache, else from the model (loaded
    once, then shared): a link to a cached run on a fresh server renders without loading it.
    """
    check_served(name)
    return _card(name, str(_card_path(name)))


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
