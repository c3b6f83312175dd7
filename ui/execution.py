"""Running requests from a page: cache first, then the device queue, with live progress."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import streamlit as st

from ui.display import SEED_COLOURS, curves_figure, enlarge
from ui.limits import Limits, load_limits
from ui.queue import ordinal
from ui.resources import get_model, loaded_model, result_cache, run_queue
from vitviz.common.cpu_slot import cpu_slot, reporting_waits
from vitviz.data import photo_sets
from vitviz.errors import UserError
from vitviz.models.layers import ModelCard, find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.quality import metrics, reading
from vitviz.rendering.loop import StepRecord
from vitviz.rendering.objectives import from_spec
from vitviz.store.results import Result, to_uint8
from vitviz.store.runs import RunRequest, cached_result

T = TypeVar("T")
REDRAW_S = 1.0  # the curve is redrawn at most this often; images whenever the run records them
CPU_WAIT = ("Waiting for another run on this machine's CPU to finish (one optimisation at a "
            "time on a CPU; it may be another visitor's, the command line's or a notebook's)…")


def queue_text(position: int) -> str:
    ahead = position - 1
    return (f"Waiting: queued behind {ahead} run{'s' if ahead != 1 else ''} for the device "
            f"({ordinal(position)} in line)…")


def loading_text(name: str) -> str:
    return f"Loading {name} (once per server; the next runs on it start at once)…"


class Waits:
    """Where a run says what it waits for, before its first step: `_say` shows a line, and
    `_slot_held` runs once the machine's CPU slot is the run's."""

    def _say(self, text: str) -> None:
        raise NotImplementedError

    def _slot_held(self) -> None:
        raise NotImplementedError

    def waiting(self, position: int) -> None:
        """Its place in the device queue."""
        self._say(queue_text(position))

    def loading(self, name: str) -> None:
        self._say(loading_text(name))

    def cpu(self, waiting: bool) -> None:
        """The machine's CPU slot is taken (True), or now held (False)."""
        if waiting:
            self._say(CPU_WAIT)
        else:
            self._slot_held()


class Notice(Waits):
    """What a run without a live view waits for, in an info box that goes when it starts."""

    def __init__(self):
        self._box = st.empty()

    def _say(self, text: str) -> None:
        self._box.info(text, icon=":material/hourglass_top:")

    def _slot_held(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._box.empty()


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


class LiveView(Waits):
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

    def _say(self, text: str) -> None:
        self._bar.progress(0.0, text=text)

    def _slot_held(self) -> None:
        self.begin()  # the time a run took counts from its slot

    def begin(self) -> None:
        self._started = time.perf_counter()
        self._say("Starting: the first step…")

    def measuring(self, layer: str, done: int, total: int) -> None:
        self._bar.progress(done / total, text=f"Starting: finding the unit's own photos, "
                                              f"{layer} on the photo set ({done}/{total} views, "
                                              "once per layer)…")

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


def use_model(name: str, work: Callable[[LoadedModel], T], view: Waits | None = None) -> T:
    """Run `work(model)` while holding the device queue's slot for `name`. `view` (else an
    info box) is told what the run waits for: its place in the queue, the model loading, the
    machine's CPU slot (`vitviz.common.cpu_slot`)."""
    queue = run_queue(load_limits().max_concurrent_runs)
    notice = Notice() if view is None else None
    view = view or notice
    try:
        with queue.slot(name, view.waiting):
            if loaded_model(name) is None:
                view.loading(name)
            model = get_model(name)
            with reporting_waits(view.cpu):
                return work(model)
    finally:
        if notice is not None:
            notice.clear()


def store_figures(request: RunRequest, result: Result, photos=None) -> None:
    """Measure a finished run's quality figures (`metrics.result_metrics`; against `photos`
    when the page already holds them) and store them with it in the cache, once."""
    if metrics.has_quality_figures(result):
        return
    result.metrics.update(use_model(
        request.model, lambda model: metrics.result_metrics(model, result, photos=photos)))
    result_cache().put(request.key(), result)


def store_reading(request: RunRequest, result: Result, minimised: Result, photos=None) -> dict:
    """The judge's reading of a unit driven up (`result`, of `request`) and down (`minimised`),
    against `photos` when the page holds them (`reading.keep_reading`), stored with the
    maximising run so that a link shows it at once."""
    found, made = use_model(request.model, lambda model: reading.keep_reading(
        model, result, minimised, photos=photos))
    if made:
        result_cache().put(request.key(), result)
    return found


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
        # The photo pass the run would make silently before its first step, made here to be
        # shown: tens of seconds on a CPU, once per layer and server.
        photos_first = request.reference_layer()
        if photos_first is not None and cached(request) is None:
            layer, tokens = photos_first
            with cpu_slot(model.device):
                photo_sets.photo_statistics(model, layer, tokens, progress=lambda done, total:
                                            view.measuring(layer, done, total))
            view.begin()
        # cached_result() checks the cache again under its lock: another session may have
        # just made it.
        return cached_result(request, result_cache(), loader=lambda _: model, progress=progress)

    try:
        return use_model(request.model, work, view)
    finally:
        view.clear()
