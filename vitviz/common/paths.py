"""Where vitviz keeps files it makes at run time (converted weights, result cache)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from vitviz.errors import UserError


def home() -> Path:
    """Root of vitviz's runtime files: $VITVIZ_HOME, else the platform's user cache folder
    (~/.cache/vitviz or $XDG_CACHE_HOME/vitviz, ~/Library/Caches/vitviz, %LOCALAPPDATA%/vitviz)."""
    env = os.environ.get("VITVIZ_HOME")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "vitviz"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "vitviz" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitviz"


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
