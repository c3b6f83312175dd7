"""The result cache: finished runs in a diskcache store, keyed by the hash of their canonical config.

Entries are written once a run has finished, in one transaction with their summary, so an
interrupted or failed run leaves nothing behind. diskcache's SQLite store is safe to share
between threads and processes, so several dashboard sessions can use one cache.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import diskcache

from vitviz.results import Result

DEFAULT_SIZE_LIMIT = 2 * 1024**3


def default_cache_dir() -> Path:
    return Path(os.environ.get("VITVIZ_CACHE_DIR", "cache"))


class ResultCache:
    def __init__(self, path: str | Path | None = None, size_limit: int | None = None):
        limit = size_limit or int(os.environ.get("VITVIZ_CACHE_SIZE_LIMIT", DEFAULT_SIZE_LIMIT))
        self.path = Path(path) if path is not None else default_cache_dir()
        # Least-recently-used results go first when the store outgrows its limit.
        self._store = diskcache.Cache(str(self.path), size_limit=limit,
                                      eviction_policy="least-recently-used")

    def get(self, key: str) -> Result | None:
        record = self._store.get(("result", key))
        return Result.from_record(record) if record is not None else None

    def __contains__(self, key: str) -> bool:
        return ("result", key) in self._store

    def put(self, key: str, result: Result) -> None:
        record = result.to_record()
        with self._store.transact():
            self._store.set(("result", key), record)
            self._store.set(("summary", key), result.summary())

    def delete(self, key: str) -> None:
        with self._store.transact():
            self._store.delete(("result", key))
            self._store.delete(("summary", key))

    def summaries(self) -> dict[str, dict]:
        """key -> summary of every stored run, newest first."""
        found = {}
        for entry in list(self._store.iterkeys()):
            if isinstance(entry, tuple) and entry[0] == "summary":
                summary = self._store.get(entry)
                if summary is not None and ("result", entry[1]) in self._store:
                    found[entry[1]] = summary
        return dict(sorted(found.items(), key=lambda kv: kv[1].get("created", ""), reverse=True))

    def volume(self) -> int:
        """Bytes on disk."""
        return self._store.volume()

    def clear(self) -> None:
        self._store.clear()

    @contextmanager
    def computing(self, key: str) -> Iterator[None]:
        """Held while a run is computed, so a second session asking for it waits for the first."""
        with diskcache.Lock(self._store, ("lock", key), expire=3600):
            yield

    def close(self) -> None:
        self._store.close()
