"""The operator's own models: Python files that call `vitviz.wrap`, and exported `.pt2` files,
named by $VITVIZ_MODELS (or `--model path.py:factory` on the command line)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from vitviz.models.exported import is_model_file, load_exported
from vitviz.models.loaded import LoadedModel, ModelError
from vitviz.models.registry import MODELS

USER_MODELS_ENV = "VITVIZ_MODELS"
_USER_FILES: dict[str, object] = {}


def load_model_file(path: str | Path):
    """Run a Python file that registers models with `wrap`, once per process; its module."""
    path = Path(path).expanduser().resolve()
    if str(path) in _USER_FILES:
        return _USER_FILES[str(path)]
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist.")
    spec = importlib.util.spec_from_file_location(f"vitviz_user_models_{len(_USER_FILES)}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code: its failure must name the file
        raise ModelError(f"model file {path} failed: {type(error).__name__}: {error}") from error
    _USER_FILES[str(path)] = module
    return module


def load_user_models(environ=None) -> list[str]:
    """Load the files named by $VITVIZ_MODELS (separated by os.pathsep); the names they added.

    A Python file calls `vitviz.wrap(...)` for its models; a `.pt2` file (`save_exported`) is
    one model, named by its stem. Either way they become known by name to the CLI, the report
    and the dashboard alike. The operator sets the variable; no link can.
    """
    value = (os.environ if environ is None else environ).get(USER_MODELS_ENV, "")
    before = set(MODELS)
    for entry in filter(None, value.split(os.pathsep)):
        if is_model_file(entry):
            load_exported(entry)
        else:
            load_model_file(entry)
    return sorted(set(MODELS) - before)


def model_from_factory(reference: str) -> LoadedModel:
    """`path/to/file.py:factory` -> the LoadedModel `factory()` returns (made with `wrap`)."""
    path, _, factory = reference.rpartition(":")
    module = load_model_file(path)
    if not callable(getattr(module, factory, None)):
        raise ModelError(f"{path} has no function {factory}().")
    loaded = getattr(module, factory)()
    if not isinstance(loaded, LoadedModel):
        raise ModelError(f"{reference} returned {type(loaded).__name__}; return "
                         "vitviz.wrap(module, name, size=..., prefix_tokens=...) instead, which "
                         "says how to feed it.")
    return loaded

