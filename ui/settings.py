"""Page settings as data: how they read from and write to the URL, and the runs they request.

A page's settings are a flat dict of plain values, one per query parameter. The request
builders here are the only place that turns settings into RunRequests, so a link (or the Runs
page's "open in" button) rebuilds exactly the request, and therefore the cache key, of the run.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from vitviz.errors import UserError
from vitviz.models.tokens import TOKEN_MODES
from vitviz.rendering import objectives
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS, from_knobs, get_preset
from vitviz.store.results import Result
from vitviz.store.runs import MAX_ITEMS, RunRequest

Parser = Callable[[str], Any]

KINDS = {kind: objective.description for kind, objective in objectives.UNIT_OBJECTIVES.items()}
NO_PRESET = "none"
# Which way the Optimise page drives its unit: up (what excites it) or down (what suppresses it).
DIRECTIONS = {"max": "up: what excites it", "min": "down: what suppresses it"}
# The Moving target page's runs: (label, preset, optimised with attention frozen at the start).
MOVING_TARGET_RUNS = (("naive", "naive", False), (DEFAULT_PRESET, DEFAULT_PRESET, False),
                      ("naive, attention frozen", "naive", True))


def text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("is empty")
    return raw.strip()


# Widgets hold numbers as JavaScript doubles: a larger integer from a link cannot be shown
# (Streamlit raised OverflowError) and names no valid setting anyway.
MAX_LINK_INTEGER = 2**53


def integer(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("is not a whole number") from None
    if abs(value) > MAX_LINK_INTEGER:
        raise ValueError("is out of range")
    return value


def number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def tokens(raw: str) -> str | int:
    if raw in TOKEN_MODES:
        return raw
    try:
        return integer(raw)
    except ValueError as error:
        if "range" in str(error):
            raise
        raise ValueError(f"is neither one of {', '.join(TOKEN_MODES)} nor a token index") from None


def flag(raw: str) -> bool:
    if raw not in ("True", "False"):
        raise ValueError("is neither True nor False")
    return raw == "True"


def choice(options) -> Parser:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return raw

    return parse


_TARGET = {"model": text, "layer": text, "unit": integer, "tokens": tokens}
_RUN = {"seed": integer, "steps": integer, "size": integer}

SCHEMAS: dict[str, dict[str, Parser]] = {
    "home": {"model": text},
    "optimise": {**_TARGET, "kind": choice(KINDS), "preset": choice(PRESETS), "lr": number,
                 "ensemble": integer, "tv": number, "photo_prior": number,
                 "focus": number, "direction": choice(DIRECTIONS), **_RUN},
    "compare": {**_TARGET, "kind": choice(KINDS), "preset": choice(PRESETS),
                "preset2": choice([NO_PRESET, *PRESETS]), "seeds": integer, **_RUN},
    "moving_target": {**_TARGET, **_RUN},
    "examples": {**_TARGET, **_RUN},
    "runs": {"run": text},
    "atlas": {"model": text, "layer": text, "seed": integer, "steps": integer, "start": integer,
              "order": choice(("unit", "activation", "robust", "judge")),
              "show": choice(("all", "computed", "missing")), "direction": choice(DIRECTIONS),
              "exemplars": flag, "mixed": flag},
}


def to_query(value: Any) -> str:
    # repr is the shortest text that reads back as the same float: a shared link must rebuild
    # the same request (and cache key), so 0.1234567 may not become 0.123457.
    return repr(value) if isinstance(value, float) else str(value)


def objective_spec(settings: dict) -> dict:
    return objectives.unit_objective(settings.get("kind", "neuron"), settings["layer"],
                                     settings["unit"], settings.get("tokens", "patch")).spec()


def _overrides(settings: dict, model_size: int, preset: str) -> dict:
    overrides = {"steps": settings["steps"]}
    # Left out at the preset's own size, so the key matches runs that never set a canvas.
    if settings["size"] != get_preset(preset).canvas_size(model_size):
        overrides["canvas"] = settings["size"]
    return overrides


def _request(settings: dict, model_size: int, preset: str, seeds, extra=None,
             moving_target=False, frozen_context=False, accentuate=None) -> RunRequest:
    return RunRequest(
        model=settings["model"], objective=objective_spec(settings), seeds=tuple(seeds),
        preset=preset, overrides={**_overrides(settings, model_size, preset), **(extra or {})},
        moving_target=moving_target, frozen_context=frozen_context,
        minimise=settings.get("direction") == "min",
        accentuate=accentuate,
    )


def examples_request(settings: dict, model_size: int) -> RunRequest:
    """The unit's visualisation with the default preset, shown next to its dataset examples."""
    return _request(settings, model_size, DEFAULT_PRESET, (settings["seed"],))


def accentuated_request(settings: dict, model_size: int) -> RunRequest:
    """The unit's accentuated exemplar: its strongest photo view, pushed by the default preset."""
    return _request(settings, model_size, DEFAULT_PRESET, (settings["seed"],), accentuate=0)


def optimise_request(settings: dict, model_size: int) -> RunRequest:
    preset = get_preset(settings["preset"])
    knobs = {"lr": settings["lr"], "ensemble": settings["ensemble"], "tv_weight": settings["tv"],
             "exemplar_stats": settings.get("photo_prior", preset.exemplar_stats),
             "token_focus": settings.get("focus", preset.token_focus)}
    return _request(settings, model_size, settings["preset"], (settings["seed"],), knobs)


def compare_presets(settings: dict) -> list[str]:
    first, second = settings["preset"], settings.get("preset2", NO_PRESET)
    return [first] + ([second] if second not in (NO_PRESET, first) else [])


def compare_seeds(settings: dict) -> list[int]:
    # Checked before the list is built: a link asking for 10^9 seeds must not allocate them.
    if not 1 <= settings["seeds"] <= MAX_ITEMS:
        raise UserError(f"The number of seeds must be from 1 to {MAX_ITEMS} "
                        f"(got {settings['seeds']}).")
    return list(range(settings["seed"], settings["seed"] + settings["seeds"]))


def compare_requests(settings: dict, model_size: int) -> list[RunRequest]:
    """One request per preset, each with every seed: the seeds of a preset run as one batch."""
    return [_request(settings, model_size, preset, compare_seeds(settings))
            for preset in compare_presets(settings)]


def moving_target_requests(settings: dict, model_size: int) -> list[RunRequest]:
    return [_request({**settings, "kind": "neuron"}, model_size, preset, (settings["seed"],),
                     moving_target=True, frozen_context=frozen)
            for _, preset, frozen in MOVING_TARGET_RUNS]


def page_for(result: Result) -> tuple[str, dict] | None:
    """The page and settings that request exactly this run, if one of the pages can."""
    config = result.config
    objective, knobs, seeds = config["objective"], config["preset"], config["seeds"]
    if objective["type"] not in KINDS or not isinstance(objective["unit"], int):
        return None
    model_size = result.model["preprocessing"]["size"]
    target = {"model": config["model"], "layer": objective["layer"], "unit": objective["unit"],
              "steps": knobs["steps"], "size": from_knobs(knobs).canvas_size(model_size),
              "seed": seeds[0]}
    if "tokens" in objective:
        target["tokens"] = objective["tokens"]
    if config["moving_target"]:
        candidates = [("moving_target", target, moving_target_requests)]
    elif len(seeds) == 1:
        settings = {**target, "kind": objective["type"], "preset": knobs["name"],
                    "lr": knobs["lr"], "ensemble": knobs["ensemble"], "tv": knobs["tv_weight"],
                    "photo_prior": knobs.get("exemplar_stats", 0.0),
                    "focus": knobs.get("token_focus", 1.0),
                    "direction": "min" if config.get("minimise") else "max"}
        candidates = [("optimise", settings, optimise_request)]
    else:
        settings = {**target, "kind": objective["type"], "preset": knobs["name"],
                    "preset2": NO_PRESET, "seeds": len(seeds)}
        candidates = [("compare", settings, compare_requests)]
    for page, settings, build in candidates:
        built = build(settings, model_size)
        requests = built if isinstance(built, list) else [built]
        if any(request.config() == config for request in requests):
            return page, settings
    return None
