"""A first-come, first-served queue for the device, shared by every session of the server.

Two runs on one model must never overlap: the optimisation hooks and the moving-target probe
patch modules of the shared network. Runs on different models may overlap up to
`max_concurrent`. Streamlit runs each session's script in its own thread, so a condition
variable is enough.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from vitviz.errors import UserError

POLL_S = 0.5  # how often a waiting session refreshes its position


class ServerStopping(UserError):
    """The server is shutting down: runs stop at their next step and leave nothing cached."""

    def __init__(self):
        super().__init__("The server is shutting down; this run was stopped and nothing was "
                         "stored. Run it again once the server is back.")


@dataclass(eq=False)  # identity, not equality: two sessions may queue the same model
class Ticket:
    model: str


class RunQueue:
    def __init__(self, max_concurrent: int = 1):
        self.max_concurrent = max_concurrent
        self._condition = threading.Condition()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self.stopping = False

    def _blocks(self, other: Ticket, ticket: Ticket) -> bool:
        return other.model == ticket.model or len(self._running) >= self.max_concurrent

    def _can_start(self, ticket: Ticket) -> bool:
        if any(self._blocks(running, ticket) for running in self._running):
            return False
        # Earlier tickets go first: on the same model, or when there is room for only one.
        for waiting in self._waiting:
            if waiting is ticket:
                return True
            if waiting.model == ticket.model or not any(
                running.model == waiting.model for running in self._running
            ):
                return False
        return False

    def _position(self, ticket: Ticket) -> int:
        """1 + the runs ahead of `ticket` that it waits for (so a waiting run is at least 2nd)."""
        earlier = self._waiting[: self._waiting.index(ticket)]
        ahead = [t for t in self._running + earlier if self._blocks(t, ticket)]
        return 1 + len(ahead)

    def check_stopping(self) -> None:
        """Called by a running run at every step."""
        if self.stopping:
            raise ServerStopping()

    def stop(self, timeout_s: float = 30) -> bool:
        """Refuse new runs, stop the running ones, and wait for them; True if all ended.

        A process that exits while a run is inside torch dies with SIGABRT (exit code -6)
        instead of stopping, which is what SIGTERM from `docker stop` or systemd did.
        """
        with self._condition:
            self.stopping = True
            self._condition.notify_all()
            return self._condition.wait_for(lambda: not self._running, timeout_s)

    def status(self) -> dict:
        with self._condition:
            return {"running": [t.model for t in self._running],
                    "waiting": [t.model for t in self._waiting]}

    @contextmanager
    def slot(self, model: str, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold the device for one run on `model`; `on_wait(position)` reports the place in line.

        The ticket leaves the queue however the block ends, also when Streamlit stops the
        script of a session that navigated away while waiting.
        """
        ticket = Ticket(model)
        with self._condition:
            self._waiting.append(ticket)
        try:
            reported = None
            with self._condition:
                while not self._can_start(ticket):
                    self.check_stopping()
                    position = self._position(ticket)
                    if on_wait and position != reported:
                        on_wait(position)
                        reported = position
                    self._condition.wait(POLL_S)
                self.check_stopping()
                self._waiting.remove(ticket)
                self._running.append(ticket)
            yield
        finally:
            with self._condition:
                for queue in (self._waiting, self._running):
                    if ticket in queue:
                        queue.remove(ticket)
                self._condition.notify_all()


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
