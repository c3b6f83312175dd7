"""Where vitviz keeps files it makes at run time (converted weights, result cache)."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Root of vitviz's runtime files: $VITVIZ_HOME, else ~/.cache/vitviz."""
    env = os.environ.get("VITVIZ_HOME")
    return Path(env) if env else Path.home() / ".cache" / "vitviz"


def models_dir() -> Path:
    """Converted model weights live here, outside the repository, so they are never committed."""
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
