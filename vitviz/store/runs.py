"""Runs as data: a request with a canonical config, computed once and served from the cache after.

The layers of the stack, bottom up: `optimise.optimise` (the loop, a generator of step records),
`compute_result` (one request on a loaded model into a Result), `cached_result` (the cache in
front of it), and the front ends: `api.visualise` (notebooks), the CLI, and the dashboard's
`ui.execution.compute_live` (queue slot and live view).
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import torch

from vitviz import __version__
from vitviz.analysis.moving_target import PROBE_VERSION, MovingTargetProbe, split
from vitviz.common.cpu_slot import cpu_slot
from vitviz.common.hashing import config_key
from vitviz.data.photo_sets import IndexMissing, configured_folder, examples_for
from vitviz.data.photos import photo_set_id, require_photos
from vitviz.errors import UserError
from vitviz.models.loaded import RANDOM_ONLY, LoadedModel
from vitviz.models.registry import load_model, model_weights, parse_model_name
from vitviz.quality.metrics import has_quality_figures, result_metrics
from vitviz.rendering import accentuate, exemplar_stats, token_focus
from vitviz.rendering.loop import ALGORITHM_VERSION, StepRecord, optimise, resolve_preset
from vitviz.rendering.objectives import UNIT_TYPES, from_spec, item_units, normal_spec
from vitviz.rendering.precision import key_entries, resolve_precision
from vitviz.rendering.presets import DEFAULT_PRESET, Preset
from vitviz.store.cache import ResultCache
from vitviz.store.results import Result, to_uint8

# Bounds of a request that the library enforces for every front end (a server may cap lower).
MAX_ITEMS = 4096
MAX_SEED = 2**31 - 1
# The deepest photo view an accentuated run may start from: the judge's photo-disjoint
# references can sit a few hundred views down the built-in set's drive order.
MAX_RANK = 1024
MAX_UNITS = 65_536  # the most units one list may name (an atlas, a report, a link)
MAX_UNITS_TEXT = 4096  # characters of a unit list
_UNIT_SPAN = re.compile(r"(\d{1,12})(?:\s*-\s*(\d{1,12}))?")


def parse_units(text: str, layer_units: int | None = None, layer: str = "the layer",
                limit: int = MAX_UNITS) -> list[int]:
    """'0-31', '3,7,9' or '0-3,8' -> unit indices, for every front end (CLI, report, a link).

    Everything is checked before a list is built: the text's length, each part's form, every
    bound against the layer's size (when given) and the count against `limit`, so that
    '0-99999999' costs nothing but its one-line refusal."""
    if not isinstance(text, str) or len(text) > MAX_UNITS_TEXT:
        raise UserError(f"a unit list is text of at most {MAX_UNITS_TEXT} characters, "
                        f"e.g. 0-31 or 3,7,9")
    spans = []
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        match = _UNIT_SPAN.fullmatch(part)
        if match is None:
            raise UserError(f"'{part[:40]}' is not a unit or a range of units: use e.g. 0-31 "
                            f"or 3,7,9 (units are whole numbers from 0)")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high < low:
            raise UserError(f"the range {low}-{high} runs backwards: write it as {high}-{low}")
        spans.append((low, high))
    if not spans:
        raise UserError(f"no units in '{text[:40]}': use e.g. 0-31 or 3,7,9")
    if layer_units is not None:
        bad = [str(low) if low == high else f"{low}-{high}" for low, high in spans
               if high >= layer_units]
        if bad:
            raise UserError(f"units {', '.join(bad[:5])} are out of range for {layer}: valid "
                            f"units are 0 to {layer_units - 1}.")
    count = sum(high - low + 1 for low, high in spans)
    if count > limit:
        raise UserError(f"'{text[:40]}' names {count:,} units: at most {limit:,} at once")
    return [unit for low, high in spans for unit in range(low, high + 1)]


def default_record_every(steps: int) -> int:
    """Images kept about eight times per run: enough to watch it form, cheap to store. What a
    request that does not say (`RunRequest.record_every` None) records, whichever entry point
    made it, so that the pages, the atlas, `vitviz run` and `visualise` share cache keys."""
    return max(1, steps // 8)


# Called after every step with (record, total steps), e.g. to draw a progress bar.
Progress = Callable[[StepRecord, int], None]


@dataclass
class RunRequest:
    """Everything that determines a run's result. Two equal requests give the same images."""

    model: str
    objective: dict  # Objective.spec()
    seeds: tuple[int, ...] = (0,)
    preset: str = DEFAULT_PRESET
    overrides: dict = field(default_factory=dict)  # preset knobs, e.g. {"steps": 128, "lr": 0.1}
    record_every: int | None = None  # images kept every N steps; None: default_record_every
    moving_target: bool = False
    frozen_context: bool = False  # optimise with attention held at the start (see optimise)
    minimise: bool = False  # drive the objective down: what suppresses the unit
    # Accentuated exemplars (vitviz.rendering.accentuate): start each picture from its unit's view of
    # this rank (0: the strongest; the weakest for a minimising run), not from noise. A tuple
    # gives each item its own rank: several exemplars of a unit in one batch.
    accentuate: int | tuple[int, ...] | None = None
    # With the preset's exemplar_stats (where it holds), exemplar_deep or drive_cap: per item,
    # the ranks of the photo views of its unit (weakest first for a minimising run) whose
    # features the picture is held to (vitviz.rendering.exemplar_stats) and whose strongest
    # value sets the cap (vitviz.rendering.drive_cap). None: each unit's photo-disjoint natural
    # exemplars (exemplar_stats.default_ranks).
    statistics_views: tuple[tuple[int, ...], ...] | None = None

    def resolved_preset(self) -> Preset:
        return resolve_preset(self.preset, **self.overrides)

    def scoped_preset(self) -> Preset:
        """The preset as far as the request alone tells where its exemplar-statistics prior,
        the unit's share and token focus hold (`Preset.scoped`): the prior not on an objective
        other than a unit's, nor on an accentuated exemplar; the share only on a maximising
        picture of one unit; focus only on a unit read over its patch tokens, from noise. How
        deep the layer is, only the model tells; the key keeps the prior wherever it may
        hold."""
        return self.resolved_preset().scoped(self.objective.get("type") in UNIT_TYPES,
                                             self.accentuate is not None,
                                             minimise=self.minimise,
                                             focusable=token_focus.applies(self.objective))

    def reads_photos(self) -> bool:
        """Whether the optimisation may read the photo set (`Preset.reads_photos`), or starts
        from a unit's photo (an accentuated exemplar)."""
        return self.accentuate is not None or self.scoped_preset().reads_photos

    def reference_layer(self) -> tuple[str, str | int] | None:
        """The layer (and tokens) whose photo-set pass the run makes before its first step, to
        find its unit's reference views (`exemplar_stats.unit_views`), or None. A front end
        makes that pass itself to show its progress: `photo_sets.photo_statistics` keeps it."""
        if not self.scoped_preset().reads_reference_views or self.statistics_views is not None:
            return None
        return self.objective["layer"], self.objective.get("tokens", "patch")

    def recording(self) -> int:
        """Every how many steps the images are kept (0: only the last)."""
        if self.record_every is None:
            return default_record_every(self.resolved_preset().steps)
        return self.record_every

    def check(self) -> None:
        """Raise a UserError for anything out of range, before any work or allocation."""
        if not 1 <= len(self.seeds) <= MAX_ITEMS:
            raise UserError(f"a run needs 1 to {MAX_ITEMS} seeds (got {len(self.seeds)})")
        if not all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in self.seeds):
            raise UserError(f"seeds must be whole numbers from 0 to {MAX_SEED}")
        if not (self.record_every is None
                or isinstance(self.record_every, int) and self.record_every >= 0):
            raise UserError(f"record_every cannot be negative (got {self.record_every!r})")
        if self.accentuate is not None:
            ranks = self.accentuate if isinstance(self.accentuate, tuple) else (self.accentuate,)
            if not all(isinstance(r, int) and 0 <= r < MAX_RANK for r in ranks):
                raise UserError(f"accentuate is the rank of the photo to start from, 0 to "
                                f"{MAX_RANK - 1} (got {self.accentuate!r})")
            if isinstance(self.accentuate, tuple) and len(ranks) != len(self.seeds):
                raise UserError(f"one rank per seed: {len(ranks)} ranks for "
                                f"{len(self.seeds)} seeds")
            if self.objective.get("type") not in ("neuron", "channel"):
                raise UserError("accentuated exemplars start from a unit's own photos: use a "
                                "neuron or channel objective")
        preset = self.resolved_preset()
        preset.check()
        if self.accentuate is None:
            for knob, default in (("accentuate_weight", accentuate.WEIGHT),
                                  ("accentuate_decay", accentuate.DECAY)):
                if getattr(preset, knob) != default:
                    raise UserError(f"{knob} shapes an accentuated exemplar: set accentuate "
                                    f"(the photo's rank), or leave {knob} out")
        scoped = self.scoped_preset()
        if self.statistics_views is not None:
            if not scoped.reads_reference_views:
                raise UserError("statistics_views are the unit's reference photo views, which "
                                "only the exemplar-statistics priors and the drive cap read: set "
                                "the preset's exemplar_stats, exemplar_deep or drive_cap too, "
                                "on a neuron or channel objective")
            if len(self.statistics_views) != len(self.seeds):
                raise UserError(f"statistics_views: one set of views per seed "
                                f"({len(self.statistics_views)} for {len(self.seeds)} seeds)")
            if not all(1 <= len(views) <= exemplar_stats.MAX_VIEWS and all(
                    isinstance(r, int) and 0 <= r < MAX_RANK for r in views)
                       for views in self.statistics_views):
                raise UserError(f"statistics_views: 1 to {exemplar_stats.MAX_VIEWS} ranks per "
                                f"seed, each 0 to {MAX_RANK - 1}")
        if scoped.reads_reference_views and self.objective.get("type") not in UNIT_TYPES:
            raise UserError("the exemplar-statistics priors and the drive cap read a unit's "
                            "own photos: use a neuron or channel objective, or set "
                            "exemplar_deep and drive_cap to 0")
        if self.reads_photos():
            require_photos("this run reads the offline photo set" + (
                " (the default holds a picture of one unit to its own photos; without them, set "
                "exemplar_stats to 0: `vitviz run --exemplar-stats 0`, or Photo prior 0 on "
                "the Optimise page)"
                if scoped.exemplar_stats else ""))

    def config(self) -> dict:
        """Canonical, JSON-ready config: stored with the result, hashed into the cache key.

        Checks the request first: no key, no cache entry and no model for a request that
        cannot run."""
        self.check()
        base, random_init = parse_model_name(self.model)
        objective = normal_spec(self.objective)  # normalises, and rejects a bad spec early
        # Where a knob cannot hold (the photo prior on an objective other than a unit's or on an
        # accentuated exemplar, the unit's share on a minimised picture, yielding with no prior
        # left), the run is the one without it: the same key.
        preset = self.scoped_preset()
        # Only a run that reads photos depends on which. The priors and reference views read
        # the built-in set, whatever folder is configured: a picture does not wait for an
        # index, nor change when one is built. An accentuated exemplar starts from a photo
        # of the configured set: an index of the user's folder (VITVIZ_PHOTOS) then gives
        # other pictures. Any other run's pictures are the same whatever the set, and their
        # photo-relative figures are measured again on another set
        # (metrics.has_quality_figures), not the pictures.
        photos = {}
        if self.reads_photos():
            folder = configured_folder() if self.accentuate is not None else None
            photos = {"photos": photo_set_id(), **({"photo_folder": str(folder)} if folder else {})}
        config = {
            "model": base + (":random" if random_init and base not in RANDOM_ONLY else ""),
            "weights": model_weights(self.model),
            **photos,
            "objective": objective,
            "seeds": [int(seed) for seed in self.seeds],
            "preset": {"name": self.preset, **preset.knobs()},
            **key_entries(preset.precision),
            "record_every": self.recording(),
            "moving_target": self.moving_target,
            **({"moving_target_version": PROBE_VERSION} if self.moving_target else {}),
            **({"frozen_context": True} if self.frozen_context else {}),
            # Only when set: every maximising result made before it existed keeps its key.
            **({"minimise": True} if self.minimise else {}),
            **({"accentuate": {"rank": list(self.accentuate) if isinstance(self.accentuate, tuple)
                               else self.accentuate, "weight": preset.accentuate_weight,
                               "decay": preset.accentuate_decay,
                               "version": accentuate.VERSION}}
               if self.accentuate is not None else {}),
            **({"statistics_views": {"ranks": [list(v) for v in self.statistics_views]
                                     if self.statistics_views is not None
                                     else exemplar_stats.DEFAULT_RANKS,
                                     "version": exemplar_stats.VERSION}}
               if preset.reads_reference_views else {}),
            "vitviz_version": __version__,
            "algorithm_version": ALGORITHM_VERSION,
        }
        unit = objective.get("unit")
        if isinstance(unit, (list, tuple)):
            config["units"] = list(unit)
        return config

    def key(self) -> str:
        return config_key(self.config())


def compute_result(request: RunRequest, model: LoadedModel,
                   progress: Progress | None = None) -> Result:
    """Run the optimisation loop (`optimise`) and gather its records into a Result; no cache.

    On the CPU it waits for the machine's CPU slot (`cpu_slot`): two runs at once would only
    slow each other down.
    """
    config = request.config()
    preset = request.resolved_preset()
    objective = from_spec(config["objective"])
    start, sources = None, None
    if request.accentuate is not None:
        start, sources = _start_views(request, model, objective, preset)
    # Without ranks the loop picks each unit's default views, where its prior holds.
    held_to = (exemplar_stats.unit_views(model, objective, len(request.seeds), request.minimise,
                                         request.statistics_views)
               if request.statistics_views is not None else None)
    probe = None
    if request.moving_target:
        probe = MovingTargetProbe(model, objective, len(request.seeds), preset.steps,
                                  block_every=request.recording() or preset.steps)
    steps, activation, loss = [], [], []
    checkpoints: dict[int, list] = {}
    context: dict[str, list] = {}
    final = None
    with cpu_slot(model.device):
        started = time.perf_counter()
        for record in optimise(model, objective, request.seeds, preset,
                               record_every=request.recording(), probe=probe,
                               frozen_context=request.frozen_context,
                               minimise=request.minimise, start=start, held_to=held_to):
            steps.append(record.step)
            activation.append(record.activation)
            if record.loss is not None:
                loss.append(record.loss)
            if record.images is not None:
                checkpoints[record.step] = list(to_uint8(record.images))
                final = checkpoints[record.step]
            for name, value in record.context.items():
                context.setdefault(name, []).append(value)
            if progress:
                progress(record, preset.steps)
    return Result(
        config=config,
        model=model.metadata(),
        images=final,
        checkpoints=checkpoints,
        steps=steps,
        activation=[list(curve) for curve in zip(*activation)],
        loss=[list(curve) for curve in zip(*loss)],
        context=context,
        elapsed_s=time.perf_counter() - started,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=str(model.device),
        precision=resolve_precision(preset.precision, model.device),
        # The gain's split, content first and order-free, per item (vitviz.analysis.moving_target).
        metrics={**({"moving_target": [split(context, item)
                                       for item in range(len(request.seeds))]}
                    if probe else {}),
                 **({"accentuated_from": [dataclasses.asdict(s) for s in sources]}
                    if sources else {})},
    )


def _start_views(request: RunRequest, model: LoadedModel, objective, preset: Preset):
    """The photos an accentuated run starts from, one per item, and where they came from."""
    examples = examples_for(model, objective.layer, getattr(objective, "tokens", "patch"))
    units = item_units(objective, len(request.seeds))
    ranks = (list(request.accentuate) if isinstance(request.accentuate, tuple)
             else [request.accentuate] * len(units))
    return accentuate.start_views(examples, units, ranks, request.minimise,
                                  preset.canvas_size(model.preprocessing.size))


def cached_result(
    request: RunRequest,
    cache: ResultCache | None = None,
    loader: Callable[[str], LoadedModel] = load_model,
    progress: Progress | None = None,
    measure: bool = False,
) -> tuple[Result, bool]:
    """The result of `request` and whether it came from the cache: the cache in front of
    `compute_result`.

    A cache hit never calls `loader`: the model is not even loaded. Only finished runs are
    stored; an exception leaves the cache as it was. With `measure`, the quality figures
    (`metrics.result_metrics`) are computed before the result is stored, so it is written once,
    and added to a cached result that lacks them.
    """
    loaded: list[LoadedModel] = []

    def model() -> LoadedModel:
        if not loaded:
            loaded.append(loader(request.model))
        return loaded[0]

    def complete(result: Result) -> bool:
        return not measure or has_quality_figures(result)

    def finish(result: Result) -> Result:
        if not complete(result):
            try:
                figures = result_metrics(model(), result)
                result.metrics.pop("figures_unavailable", None)
                result.metrics.update(figures)
            except IndexMissing as error:
                # The pictures are done and worth keeping; the figures come once the folder's
                # index exists (the result lacks them, so it is measured again then).
                result.metrics["figures_unavailable"] = str(error)
        return result

    if cache is None:
        return finish(compute_result(request, model(), progress)), False
    key = request.key()
    cached = cache.get(key)
    if cached is not None and complete(cached):
        return cached, True
    with cache.computing(key):
        cached = cache.get(key)  # another session may have finished it while we waited
        if cached is not None and complete(cached):
            return cached, True
        # Either computed now, or cached without the figures `measure` asks for.
        result = finish(cached if cached is not None
                        else compute_result(request, model(), progress))
        cache.put(key, result)
    return result, cached is not None
