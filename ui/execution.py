"""Running requests from a page: cache first, then the device queue, with live progress."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import streamlit as st

from ui.display import SEED_COLOURS, curves_figure, enlarge
from ui.limits import Limits, load_limits
from ui.queue import ordinal
from ui.resources import get_model, result_cache, run_queue
from vitviz.errors import UserError
from vitviz.models.layers import ModelCard, find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.rendering.loop import StepRecord
from vitviz.rendering.objectives import from_spec
from vitviz.store.results import Result, to_uint8
from vitviz.store.runs import RunRequest, cached_result

T = TypeVar("T")
REDRAW_S = 1.0  # the curve is redrawn at most this often; images whenever the run records them


def request_problems(request: RunRequest, model: ModelCard, limits: Limits) -> list[str]:
    """Everything wrong with a request, as messages, before any compute is spent on it."""
    found = []
    try:
        from_spec(request.objective).validate(lambda name: find_layer(model, name))
    except UserError as error:
        found.append(str(error))
    # The server's caps first: they name the setting to change in this dashboard.
    for check in (lambda: limits.check(request, model.preprocessing.size), request.check):
        try:
            check()
        except UserError as error:
            return found + [str(error)]
    return found


class LiveView:
    """Progress bar with elapsed time and ETA, the latest images and the curve of a running run."""

    def __init__(self, labels: list[str], side_by_side: bool = True, key: str = "live"):
        self._labels, self._key = labels, key
        self._root = st.empty()
        box = self._root.container()
        self._bar = box.progress(0.0, text="Starting…")
        left, right = box.columns([2, 3], gap="large") if side_by_side else (box, box)
        self._images = [column.empty() for column in left.columns(min(len(labels), 8))]
        self._chart = right.empty()
        self._steps: list[int] = []
        self._curves: list[list[float]] = [[] for _ in labels]
        self._started = time.perf_counter()
        self._drawn = 0.0
        self._draws = 0

    def waiting(self, position: int) -> None:
        self._bar.progress(0.0, text=f"Waiting: {ordinal(position)} in queue for the device…")

    def begin(self) -> None:
        self._started = time.perf_counter()
        self._bar.progress(0.0, text="Loading the model and starting…")

    def update(self, record: StepRecord, total: int) -> None:
        now = time.perf_counter()
        self._steps.append(record.step)
        for curve, value in zip(self._curves, record.activation):
            curve.append(value)
        done = min(record.step + 1, total)
        elapsed = now - self._started
        left = elapsed / done * (total - done)
        self._bar.progress(done / total, text=f"Step {done}/{total} · {elapsed:.0f} s elapsed · "
                                              f"about {left:.0f} s left")
        if record.images is not None:
            for slot, image, label in zip(self._images, to_uint8(record.images), self._labels):
                slot.image(enlarge(image), caption=f"{label} · step {record.step}",
                           width="stretch")
        if record.images is not None or now - self._drawn > REDRAW_S:
            curves = [(label, self._steps, curve, SEED_COLOURS[i % len(SEED_COLOURS)])
                      for i, (label, curve) in enumerate(zip(self._labels, self._curves))]
            self._draws += 1
            # A fresh key per draw: Streamlit refuses two charts with one id in a run.
            self._chart.plotly_chart(curves_figure(curves), key=f"{self._key}.{self._draws}")
            self._drawn = now

    def clear(self) -> None:
        self._root.empty()


def use_model(name: str, work: Callable[[LoadedModel], T],
              on_wait: Callable[[int], None] | None = None) -> T:
    """Run `work(model)` while holding the device queue's slot for `name`."""
    queue = run_queue(load_limits().max_concurrent_runs)
    notice = None
    if on_wait is None:
        notice = st.empty()

        def on_wait(position: int) -> None:
            notice.info(f"Waiting: {ordinal(position)} in queue for the device…")
    try:
        with queue.slot(name, on_wait):
            return work(get_model(name))
    finally:
        if notice is not None:
            notice.empty()


def cached(request: RunRequest) -> Result | None:
    return result_cache().get(request.key())


def compute_live(request: RunRequest, view: LiveView) -> tuple[Result, bool]:
    """`cached_result` with a slot in the device queue and the live view drawn at every step:
    the request's result and whether it came from the cache. A hit never touches the model."""
    hit = cached(request)
    if hit is not None:
        return hit, True

    queue = run_queue(load_limits().max_concurrent_runs)

    def progress(record: StepRecord, total: int) -> None:
        queue.check_stopping()
        view.update(record, total)

    def work(model: LoadedModel) -> tuple[Result, bool]:
        view.begin()
        # cached_result() checks the cache again under its lock: another session may have
        # just made it.
        return cached_result(request, result_cache(), loader=lambda _: model, progress=progress)

    try:
        return use_model(request.model, work, view.waiting)
    finally:
        view.clear()
