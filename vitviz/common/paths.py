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
    """Check now that `path` can be a folder written to, so that a bad output folder fails
    before the work, not after it: an existing folder must be writable, and a missing one is
    created and removed again (with any parents made for it), so that a run stopped before it
    writes leaves no empty folder behind. The writer creates it when it has something to put
    in it."""
    path = Path(path)
    made = []
    try:
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            return path
        for folder in (path, *path.parents):  # the folders mkdir would make, deepest first
            if folder.exists() or folder.is_symlink():
                break
            made.append(folder)
        path.mkdir(parents=True)
    except OSError as error:
        raise UserError(f"cannot write to {path}: {error.strerror or error}") from None
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                pass
    return path
