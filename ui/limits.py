"""Limits for a hosted demo: the models served, steps, image size, batch and concurrent runs.

Read on every page run, so an operator changes them without restarting the server. Precedence:
environment variable, then `vitviz_limits.toml` (or the file named by VITVIZ_LIMITS_FILE), then
the defaults, which suit a local install.

The models served: VITVIZ_MODELS_ALLOWED (names separated by commas or spaces) or the file's
`models_allowed` list; unset, every registered model. An untrained copy is a model of its own:
`vit_b_16` does not allow `vit_b_16:random` unless that is listed too (`tiny_vit` and
`tiny_cnn` exist only untrained and are listed by their plain names).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vitviz.errors import UserError
from vitviz.models.loaded import RANDOM_ONLY, RANDOM_SUFFIX, ModelError
from vitviz.models.registry import parse_model_name
from vitviz.store.runs import RunRequest

LIMITS_FILE = "vitviz_limits.toml"
LIMITS_FILE_ENV = "VITVIZ_LIMITS_FILE"

# field: (environment variable, default, what the limit counts)
FIELDS = {
    "max_steps": ("VITVIZ_MAX_STEPS", 2048, "optimisation steps per run"),
    "max_image_size": ("VITVIZ_MAX_IMAGE_SIZE", 1024, "image side in pixels"),
    "max_batch": ("VITVIZ_MAX_BATCH", 16, "images (seeds) optimised together in one run"),
    "max_concurrent_runs": ("VITVIZ_MAX_CONCURRENT_RUNS", 1, "runs computing at once, all models"),
}
MODELS_ALLOWED = "models_allowed"
MODELS_ALLOWED_ENV = "VITVIZ_MODELS_ALLOWED"
MIN_IMAGE_SIZE = 16
ALLOW_DELETE_ENV = "VITVIZ_ALLOW_DELETE"


class LimitError(UserError):
    """A request exceeds a limit, or a limit is misconfigured; the message says which."""


@dataclass(frozen=True)
class Limits:
    max_steps: int = FIELDS["max_steps"][1]
    max_image_size: int = FIELDS["max_image_size"][1]
    max_batch: int = FIELDS["max_batch"][1]
    max_concurrent_runs: int = FIELDS["max_concurrent_runs"][1]
    # The models a link or a picker may name, canonical ('vit_b_16:random'); None: all of them.
    models_allowed: tuple[str, ...] | None = None
    sources: dict = field(default_factory=dict, compare=False)  # field -> where its value came from

    def where(self, name: str) -> str:
        env = FIELDS[name][0]
        source = self.sources.get(name, "default")
        if source == "default":
            return f"the default; change it with {env}"
        return f"set by {source}"

    def serves(self, name: str) -> bool:
        """Whether this server may load model `name` (a registry name, ':random' or not)."""
        return self.models_allowed is None or _canonical(name) in self.models_allowed

    def check_model(self, name: str) -> None:
        """Raise LimitError, naming the models served, if this server does not serve `name`."""
        if not self.serves(name):
            source = self.sources.get(MODELS_ALLOWED, MODELS_ALLOWED_ENV)
            raise LimitError(f"This server does not serve the model '{name}'. It serves "
                             f"{', '.join(self.models_allowed)} (set by {source}).")

    def check(self, request: RunRequest, model_size: int) -> None:
        """Raise LimitError if `request` asks for more than this server allows."""
        knobs = request.resolved_preset()
        for size, value in (("steps", knobs.steps), ("size", knobs.canvas_size(model_size)),
                            ("batch", len(request.seeds))):
            problem = self.problem(size, value)
            if problem:
                raise LimitError(problem)

    def problem(self, size: str, value: int) -> str | None:
        """What is wrong with `value` for one size a visitor controls ("steps", "size" of the
        image, "batch" of images), or None: the one home of these limits' messages."""
        if size == "steps":
            if value < 1:
                return f"Steps must be at least 1 (got {value})."
            if value > self.max_steps:
                return (f"{value} steps is above this server's limit of {self.max_steps} "
                        f"({self.where('max_steps')}).")
        elif size == "size":
            if value < MIN_IMAGE_SIZE:
                return f"Image size must be at least {MIN_IMAGE_SIZE} px (got {value})."
            if value > self.max_image_size:
                return (f"Image size {value} px is above this server's limit of "
                        f"{self.max_image_size} px ({self.where('max_image_size')}).")
        elif value < 1:
            return "A run needs at least one seed."
        elif value > self.max_batch:
            return (f"{value} images in one run is above this server's limit of "
                    f"{self.max_batch} ({self.where('max_batch')}).")
        return None


def limits_file(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(LIMITS_FILE_ENV, LIMITS_FILE))


def load_limits(environ: Mapping[str, str] | None = None) -> Limits:
    environ = os.environ if environ is None else environ
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    models = None
    path = limits_file(environ)
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise LimitError(f"{path} is not valid TOML: {error}") from error
        unknown = set(table) - set(FIELDS) - {MODELS_ALLOWED}
        if unknown:
            raise LimitError(f"{path}: unknown settings {sorted(unknown)}; use "
                             f"{sorted([*FIELDS, MODELS_ALLOWED])}.")
        for name, value in table.items():
            if name == MODELS_ALLOWED:
                models = _models(value, f"{MODELS_ALLOWED} in {path}")
            else:
                values[name] = _positive(value, f"{name} in {path}")
            sources[name] = str(path)
    elif LIMITS_FILE_ENV in environ:
        raise LimitError(f"{LIMITS_FILE_ENV} names {path}, which does not exist.")
    for name, (env, _, _) in FIELDS.items():
        if environ.get(env, "").strip():
            values[name] = _positive(environ[env].strip(), env)
            sources[name] = env
    if environ.get(MODELS_ALLOWED_ENV, "").strip():
        models = _models(environ[MODELS_ALLOWED_ENV].replace(",", " ").split(),
                         MODELS_ALLOWED_ENV)
        sources[MODELS_ALLOWED] = MODELS_ALLOWED_ENV
    return Limits(**values, models_allowed=models, sources=sources)


def _canonical(name: str) -> str:
    """'vit_b_16:random' stays; 'tiny_vit:random' is 'tiny_vit' (it has no trained weights)."""
    base, random_init = parse_model_name(name)
    return base + (RANDOM_SUFFIX if random_init and base not in RANDOM_ONLY else "")


def _models(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise LimitError(f"{where} must list at least one model name (got {value!r}).")
    try:
        return tuple(dict.fromkeys(_canonical(name.strip()) for name in value))
    except ModelError as error:
        raise LimitError(f"{where}: {error}") from error


def _positive(value, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise LimitError(f"{where}={value!r} is not a positive whole number.")
    return number


def deletion_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether visitors may delete runs from the shared cache (a hosted demo may say no)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ALLOW_DELETE_ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise LimitError(f"{ALLOW_DELETE_ENV}={value!r}: use 1 to allow deleting runs, 0 to forbid it.")
