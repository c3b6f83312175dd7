"""Limits for a hosted demo: steps, image size, batch and concurrent runs.

Read on every page run, so an operator changes them without restarting the server. Precedence:
environment variable, then `vitviz_limits.toml` (or the file named by VITVIZ_LIMITS_FILE), then
the defaults, which suit a local install.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vitviz.errors import UserError
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
    sources: dict = field(default_factory=dict, compare=False)  # field -> where its value came from

    def where(self, name: str) -> str:
        env = FIELDS[name][0]
        source = self.sources.get(name, "default")
        if source == "default":
            return f"the default; change it with {env}"
        return f"set by {source}"

    def check(self, request: RunRequest, model_size: int) -> None:
        """Raise LimitError if `request` asks for more than this server allows."""
        knobs = request.resolved_preset()
        steps, size, batch = knobs.steps, knobs.canvas_size(model_size), len(request.seeds)
        if steps < 1:
            raise LimitError(f"Steps must be at least 1 (got {steps}).")
        if steps > self.max_steps:
            raise LimitError(f"{steps} steps is above this server's limit of {self.max_steps} "
                             f"({self.where('max_steps')}).")
        if size < MIN_IMAGE_SIZE:
            raise LimitError(f"Image size must be at least {MIN_IMAGE_SIZE} px (got {size}).")
        if size > self.max_image_size:
            raise LimitError(f"Image size {size} px is above this server's limit of "
                             f"{self.max_image_size} px ({self.where('max_image_size')}).")
        if batch < 1:
            raise LimitError("A run needs at least one seed.")
        if batch > self.max_batch:
            raise LimitError(f"{batch} images in one run is above this server's limit of "
                             f"{self.max_batch} ({self.where('max_batch')}).")


def limits_file(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(LIMITS_FILE_ENV, LIMITS_FILE))


def load_limits(environ: Mapping[str, str] | None = None) -> Limits:
    environ = os.environ if environ is None else environ
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    path = limits_file(environ)
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise LimitError(f"{path} is not valid TOML: {error}") from error
        unknown = set(table) - set(FIELDS)
        if unknown:
            raise LimitError(f"{path}: unknown settings {sorted(unknown)}; use {sorted(FIELDS)}.")
        for name, value in table.items():
            values[name] = _positive(value, f"{name} in {path}")
            sources[name] = str(path)
    elif LIMITS_FILE_ENV in environ:
        raise LimitError(f"{LIMITS_FILE_ENV} names {path}, which does not exist.")
    for name, (env, _, _) in FIELDS.items():
        if environ.get(env, "").strip():
            values[name] = _positive(environ[env].strip(), env)
            sources[name] = env
    return Limits(**values, sources=sources)


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
