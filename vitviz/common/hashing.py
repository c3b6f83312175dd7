"""Stable hashes: of files (weights provenance) and of configs (cache keys)."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so that a replaced file is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value) -> str:
    """One spelling per value: sorted keys, no spaces, so equal configs hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_key(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def package_file_provenance(distribution: str, path: Path, label: str) -> dict:
    """Where a weights file came from: package, installed version, file, sha256."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(distribution)
    except PackageNotFoundError:
        installed = "unknown"
    return {"package": distribution, "version": installed, "file": label,
            "sha256": file_sha256(path)}
