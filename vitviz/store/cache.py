"""The result cache: finished runs in a diskcache store, keyed by the hash of their canonical config.

What a public demo needs from it, and how it gets it:
- An entry is written once its run has finished, with its summary in one transaction, so an
  interrupted or failed run leaves nothing behind.
- Nothing stored executes on load: a result is a zip of JSON and PNGs (`Result.to_archive`),
  a summary is JSON text, keys are strings. `SafeDisk` refuses diskcache's pickled keys and
  values, so a crafted entry cannot run code.
- One bad file costs one entry: an unreadable entry is removed when found and reported once
  through `take_notices()`. A store SQLite cannot read, or one holding pickles (an older vitviz
  or a crafted file), is moved aside whole and a fresh one started, with a notice; every result
  in it that still opens as an archive is carried into the fresh one under its key (`salvage`).
- The lock that makes a second session wait for a run being computed is an OS file lock: the
  kernel releases it when its process dies, however it dies.
- Eviction is ours (diskcache's own culls a batch of rows at once, locks and the newest result
  included): least-recently-used finished results go first, never the one just stored.
diskcache's SQLite store is safe to share between threads and processes.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import diskcache
import filelock

from vitviz.common.hashing import config_key
from vitviz.common.paths import home
from vitviz.store.results import Result, UnreadableResult

DEFAULT_SIZE_LIMIT = 2 * 1024**3
MAX_NOTICES = 20
_RESULT, _SUMMARY, _USED = "result/", "summary/", "used/"
_PICKLE_MODE = 4  # diskcache.core.MODE_PICKLE
log = logging.getLogger(__name__)
T = TypeVar("T")


def default_cache_dir(project_default: Path | None = None) -> Path:
    """$VITVIZ_CACHE_DIR, else `project_default` (the dashboard's `cache/` beside app.py), else
    `results` in vitviz's user cache folder (the CLI and notebooks, from any directory)."""
    env = os.environ.get("VITVIZ_CACHE_DIR")
    if env:
        return Path(env)
    return project_default if project_default is not None else home() / "results"


class UnsafeEntry(OSError):
    """A pickled key or value: diskcache treats an OSError from the disk layer as a miss."""


class SafeDisk(diskcache.Disk):
    """diskcache's storage layer, minus pickle: strings, numbers and bytes only."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        return super().get(key, raw) if raw else None

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not isinstance(value, (str, bytes, int, float)):
            raise TypeError(f"cache values are str, bytes or numbers, not {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == _PICKLE_MODE:
            raise UnsafeEntry("pickled value refused")
        return super().fetch(mode, filename, value, read)


def store_problem(path: Path) -> str | None:
    """Why the store at `path` must not be opened, or None when it may.

    Read-only and before diskcache touches it: diskcache would silently start an empty store
    in a zero-byte file and leave every value file orphaned.
    """
    db = path / "cache.db"
    if not db.exists():
        return None
    if db.stat().st_size == 0:
        # Results are *.val files (`_diskcache`); diskcache would forget them with the index.
        orphans = next(path.rglob("*.val"), None)
        return "cache.db is empty while result files exist" if orphans else None
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return f"SQLite integrity check failed: {check}"
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "Cache" in tables:
                pickled = connection.execute(
                    "SELECT COUNT(*) FROM Cache WHERE raw = 0 OR mode = ?",
                    (_PICKLE_MODE,)).fetchone()[0]
                if pickled:
                    return (f"{pickled} pickled entries (written by a vitviz before result "
                            "archives, or crafted)")
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return f"SQLite cannot read it ({error})"
    return None


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _salvageable(aside: Path) -> Iterator[tuple[bytes | None, float]]:
    """(bytes, time stored) of every value in the moved-aside store `aside` that may be a
    result: its value files, then the byte values inside its index as far as SQLite can still
    read it. None for a file that cannot be read. Bytes only: nothing here is unpickled."""
    for file in sorted(aside.rglob("*.val")):
        try:
            yield file.read_bytes(), file.stat().st_mtime
        except OSError:
            yield None, 0.0
    db = aside / "cache.db"
    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            # A store written before every value had its own file keeps small byte values in
            # the row itself (raw mode).
            for value, stored in connection.execute(
                    "SELECT value, store_time FROM Cache WHERE raw = 1 AND mode = 1 "
                    "AND typeof(value) = 'blob'"):
                yield value, stored if isinstance(stored, (int, float)) else 0.0
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:  # the rows read so far are kept
        log.warning("result cache: the index of %s stops being readable: %s", aside.name, error)


ZIP_MAGIC = b"PK\x03\x04"  # how every result archive starts
CARRYING = "carrying"  # in a fresh store's locks/: the moved-aside store being carried into it


def salvage(aside: Path, store: diskcache.Cache) -> tuple[int, int]:
    """Put every result of the moved-aside store `aside` that still opens as a result archive
    into `store`, under its key (the hash of its config, as `RunRequest.key`), with its summary.

    Returns (results carried, values that could not be read as results).
    """
    carried: set[str] = set()
    unreadable = 0
    for data, stored in _salvageable(aside):
        if data is not None and not data.startswith(ZIP_MAGIC):
            continue  # a summary or a time stamp: made again from the result it belongs to
        try:
            if data is None:
                raise UnreadableResult("unreadable file")
            result = Result.from_archive(data)
            key, summary = config_key(result.config), json.dumps(result.summary())
        except Exception:  # a damaged archive, or one whose config is not a run's
            unreadable += 1
            continue
        if key in carried:
            continue
        with store.transact():
            store.set(_RESULT + key, data)
            store.set(_SUMMARY + key, summary)
            store.set(_USED + key, stored)
        carried.add(key)
    return len(carried), unreadable


class ResultCache:
    def __init__(self, path: str | Path | None = None, size_limit: int | None = None):
        self.size_limit = size_limit or int(
            os.environ.get("VITVIZ_CACHE_SIZE_LIMIT", DEFAULT_SIZE_LIMIT))
        self.path = Path(path) if path is not None else default_cache_dir()
        self._notices: deque[str] = deque(maxlen=MAX_NOTICES)
        self._reopen = threading.Lock()
        self._store = self._open()

    def _open(self) -> diskcache.Cache:
        locks = self.path / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        # One opener at a time: a store being created is briefly a zero-byte file, which must
        # not be judged damaged by a second process. The lock file moves aside with a damaged
        # store, so it is never deleted by path.
        with filelock.FileLock(locks / "open.lock", preserve_lock_file=True):
            problem = store_problem(self.path)
            if problem is None:
                store = self._diskcache()
                stopped = self._unfinished_carry()
                if stopped is None:
                    return store
                return self._carry(stopped, store, f"Carrying the results of {stopped.name} "
                                   "into the result cache had stopped (a killed server?)")
            aside = self._move_aside()
            locks.mkdir(parents=True, exist_ok=True)
            # Said before anything is carried: a process killed while carrying leaves it, and
            # the next opener carries on.
            (locks / CARRYING).write_text(aside.name)
        # The lock held so far moved aside with the store: openers of the fresh one wait on its
        # own lock until what could be saved is in it.
        with filelock.FileLock(locks / "open.lock", preserve_lock_file=True):
            return self._carry(aside, self._diskcache(),
                               f"The result cache was unreadable ({problem}): it was moved to "
                               f"{aside.name} and a fresh cache started")

    def _unfinished_carry(self) -> Path | None:
        """The moved-aside store whose results were still being carried when its carrier
        stopped, if any."""
        marker = self.path / "locks" / CARRYING
        try:
            aside = self.path.with_name(marker.read_text().strip())
        except OSError:
            return None
        if aside.name.startswith(f"{self.path.name}.corrupt-") and aside.is_dir():
            return aside
        marker.unlink(missing_ok=True)
        return None

    def _carry(self, aside: Path, store: diskcache.Cache, said: str) -> diskcache.Cache:
        """Carry the results of `aside` into `store` (`salvage`), and say so."""
        try:
            carried, unreadable = salvage(aside, store)
        except Exception:  # a full disk, say: the fresh store opens all the same
            log.exception("result cache: carrying results out of %s failed", aside)
            carried, unreadable = 0, 0
        (self.path / "locks" / CARRYING).unlink(missing_ok=True)
        left = (f" ({plural(unreadable, 'entry', 'entries')} that could not be read as a "
                "result stay there)" if unreadable else "")
        self._notice(f"{said}; {plural(carried, 'finished result')} that could still be read "
                     f"{'was' if carried == 1 else 'were'} carried into it{left}.")
        return store

    def _diskcache(self) -> diskcache.Cache:
        # Eviction is done by `_evict`; diskcache's would also drop the result just stored.
        # Every text and byte value in a file of its own, however small (diskcache keeps those
        # under 32 KB inside the index): a result then outlives a damaged index (`salvage`).
        return diskcache.Cache(str(self.path), disk=SafeDisk, eviction_policy="none",
                               size_limit=2**62, cull_limit=0, disk_min_file_size=0)

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self.path.rename(aside)
        return aside

    def _recover(self, error: sqlite3.DatabaseError) -> None:
        """After an SQLite error on an open store: reopen it, moving it aside if it is damaged.

        A busy or briefly failing store passes the check and is kept.
        """
        log.warning("result cache: %s; checking the store", error)
        with self._reopen:
            with suppress(Exception):  # a broken store may fail to close; it is being replaced
                self._store.close()
            self._store = self._open()

    def _guarded(self, action: Callable[[], T], fallback: T) -> T:
        try:
            return action()
        except sqlite3.DatabaseError as error:
            self._recover(error)
            return fallback

    def _notice(self, text: str) -> None:
        log.warning(text)
        self._notices.append(text)

    def take_notices(self) -> list[str]:
        """What went wrong since the last call (unreadable entries, a store moved aside)."""
        taken = []
        while self._notices:
            taken.append(self._notices.popleft())
        return taken

    def get(self, key: str) -> Result | None:
        """The stored result, or None. An entry that cannot be decoded is removed and reported."""
        data = self._guarded(lambda: self._store.get(_RESULT + key), None)
        if data is None:
            # A row whose value file cannot be read (diskcache reports that as a miss).
            if self._guarded(lambda: (_RESULT + key) in self._store, False):
                self._drop(key, "its value file is missing or unreadable")
            return None
        try:
            if not isinstance(data, bytes):
                raise UnreadableResult(f"stored as {type(data).__name__}, not an archive")
            result = Result.from_archive(data)
        except UnreadableResult as error:
            self._drop(key, str(error))
            return None
        self._guarded(lambda: self._store.set(_USED + key, time.time()), None)
        return result

    def _drop(self, key: str, reason: str) -> None:
        self.delete(key)
        self._notice(f"Run {key[:12]}… in the result cache was unreadable ({reason}) and was "
                     "removed; running it again recomputes it.")

    def __contains__(self, key: str) -> bool:
        return self._guarded(lambda: (_RESULT + key) in self._store, False)

    def stored_bytes(self, key: str) -> int:
        """The size of one stored run's archive (0 when it is not there); not counted as a use."""
        data = self._guarded(lambda: self._store.get(_RESULT + key), None)
        return len(data) if isinstance(data, bytes) else 0

    def put(self, key: str, result: Result) -> None:
        archive = result.to_archive()
        summary = json.dumps(result.summary())

        def write() -> None:
            with self._store.transact():
                self._store.set(_RESULT + key, archive)
                self._store.set(_SUMMARY + key, summary)
                self._store.set(_USED + key, time.time())

        self._guarded(write, None)
        self._evict(keep=key)

    def delete(self, key: str) -> bool:
        """Remove one run; False when it was not there (deleted by someone else meanwhile)."""
        def remove() -> bool:
            with self._store.transact():
                found = self._store.delete(_RESULT + key)
                self._store.delete(_SUMMARY + key)
                self._store.delete(_USED + key)
            return found

        return self._guarded(remove, False)

    def _keys(self, prefix: str) -> list[str]:
        return [k[len(prefix):] for k in self._guarded(lambda: list(self._store.iterkeys()), [])
                if isinstance(k, str) and k.startswith(prefix)]

    def summaries(self) -> dict[str, dict]:
        """key -> summary of every stored run, newest first."""
        found = {}
        for key in self._keys(_SUMMARY):
            text = self._guarded(lambda: self._store.get(_SUMMARY + key), None)
            try:
                summary = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                summary = None
            if not isinstance(summary, dict):
                self._drop(key, "its summary is damaged")
                continue
            found[key] = summary
        return dict(sorted(found.items(), key=lambda kv: str(kv[1].get("created", "")),
                           reverse=True))

    def _evict(self, keep: str) -> None:
        """Least-recently-used finished results go until the store fits; never `keep`."""
        if self.volume() <= self.size_limit:
            return
        used = {key: self._guarded(lambda: self._store.get(_USED + key), None) or 0.0
                for key in self._keys(_RESULT) if key != keep}
        for key in sorted(used, key=used.get):
            self.delete(key)
            log.info("evicted run %s to respect the cache's size limit", key)
            if self.volume() <= self.size_limit:
                return

    def volume(self) -> int:
        """Bytes on disk."""
        return self._guarded(self._store.volume, 0)

    def clear(self) -> None:
        self._guarded(self._store.clear, None)

    @contextmanager
    def computing(self, key: str) -> Iterator[None]:
        """Held while a run is computed, so a second session asking for it waits for the first.

        An OS file lock: released by the kernel when its holder exits or is killed, so a
        crashed run never blocks the next one.
        """
        locks = self.path / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        # A new FileLock object per call: threads of one server must exclude each other too.
        with filelock.FileLock(locks / f"{key}.lock"):
            yield

    def close(self) -> None:
        self._store.close()

