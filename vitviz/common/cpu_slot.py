"""One optimisation at a time on this machine's CPU, across threads and processes.

Torch runs every op on a pool of threads, one per core. Two optimisations at once on a small
CPU (a dashboard and a CLI run, two dashboards, a notebook) oversubscribe the cores: on 2 cores
a step took more than ten times as long. So a run on the CPU holds an OS file lock in vitviz's
home folder; others wait their turn (the kernel frees the lock if its holder dies). GPU runs do
not take it. VITVIZ_CPU_SLOT=0 turns it off, for a machine with cores to spare.

A front end that wants to say why a run has not started wraps it in `reporting_waits(callback)`:
the slot calls `callback(True)` when it finds the slot taken and `callback(False)` once it holds
it (a context variable, so the run's own code between them needs no extra argument).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import filelock
import torch

from vitviz.common.paths import home

ENV = "VITVIZ_CPU_SLOT"
NOTICE_AFTER_S = 1.0
log = logging.getLogger("vitviz")

# Told True when the slot is taken and this run waits, False once it holds the slot.
WaitReport = Callable[[bool], None]
_on_wait: ContextVar[WaitReport | None] = ContextVar("vitviz_cpu_slot_on_wait", default=None)


def lock_path():
    folder = home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "cpu.lock"


@contextmanager
def reporting_waits(callback: WaitReport) -> Iterator[None]:
    """Within the block, a wait for the CPU slot is reported to `callback` (see the module)."""
    token = _on_wait.set(callback)
    try:
        yield
    finally:
        _on_wait.reset(token)


@contextmanager
def cpu_slot(device: torch.device) -> Iterator[None]:
    """Hold the machine's CPU slot for the block when `device` is the CPU."""
    if device.type != "cpu" or os.environ.get(ENV, "1") == "0":
        yield
        return
    # thread_local: each thread opens the file itself, so threads of one process queue too.
    lock = filelock.FileLock(lock_path(), thread_local=True)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        report = _on_wait.get()
        if report is not None:
            report(True)
        try:
            lock.acquire(timeout=NOTICE_AFTER_S)
        except filelock.Timeout:
            log.warning("waiting for another vitviz run to leave this machine's CPU (%s; set "
                        "%s=0 to run side by side)", lock.lock_file, ENV)
            lock.acquire()
        if report is not None:
            report(False)
    try:
        yield
    finally:
        lock.release()
