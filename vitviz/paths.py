"""Where vitviz keeps files it makes at run time (converted weights, result cache)."""
from __future__ import annotations

import os
from pathlib import Path

from vitviz.errors import UserError


def home() -> Path:
    """Root of vitviz's runtime files: $VITVIZ_HOME, else ~/.cache/vitviz."""
    env = os.environ.get("VITVIZ_HOME")
    return Path(env) if env else Path.home() / ".cache" / "vitviz"


def models_dir() -> Path:
    """Converted model weights live here, outside the repository, so they are never committed."""
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def writable_folder(path: Path) -> Path:
    """Create `path` now, so that a bad output folder fails before the work, not after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write to {path}: {error.strerror or error}") from None
    return path
