"""A whole layer visualised: many units per batch, each stored as the run a page would ask for.

    python -m vitviz atlas --model dinov2_vits14 --layer encoder.layers.encoder_layer_6.mlp.1 \\
        --units 0-255 --steps 128

Units are optimised several at a time (one batch item each, one seed). A batch item's result
depends only on its unit and seed, not on the rest of the batch (tests/test_optimise.py), so
each item is stored in the result cache under the key of the single-unit run that the
dashboard's Optimise and Dataset examples pages request with the same settings: a unit opened
later on any page is a cache hit. Finished units are skipped, so a rerun resumes; an
interrupted batch stores nothing, and the cache writes each entry whole.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

from vitviz.errors import UserError
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.quality.metrics import result_metrics
from vitviz.rendering import objectives
from vitviz.rendering.batching import free_bytes, items_that_fit, saved_bytes_per_item
from vitviz.rendering.loop import resolve_preset
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache
from vitviz.store.results import Result
from vitviz.store.runs import MAX_ITEMS, Progress, RunRequest, compute_result

# Called as progress(units done, units to do, seconds so far) after each batch.
AtlasProgress = Callable[[int, int, float], None]


def unit_request(model: str, layer: str, unit: int, seed: int = 0,
                 preset: str = DEFAULT_PRESET, steps: int | None = None,
                 tokens: str | int = "patch", minimise: bool = False,
                 accentuate: int | None = None) -> RunRequest:
    """The single-unit run of the dashboard's pages for these settings (same cache key),
    checked: steps 0 is refused, never replaced by the preset's own. With `accentuate` (a
    rank), the unit's accentuated exemplar from its photo view of that rank."""
    settings = resolve_preset(preset, **({"steps": steps} if steps is not None else {}))
    settings.check()
    steps = settings.steps
    return RunRequest(model, objectives.neuron(layer, unit, tokens).spec(), (seed,), preset,
                      {"steps": steps}, minimise=minimise, accentuate=accentuate)


def stored_figure(result: Result, name: str) -> float | None:
    """A unit's stored figure `name` (its first item's), or None where it has none. A unit that
    no photo drives above zero has no relative figure (NaN): None sorts it with the missing,
    where NaN would scramble a sort (and is not JSON)."""
    values = result.metrics.get(name)
    if not (isinstance(values, list) and values):
        return None
    value = float(values[0])
    return value if math.isfinite(value) else None


def item_result(batch: Result, item: int, request: RunRequest) -> Result:
    """Batch item `item` of `batch` as the result of the single run `request`."""
    items = len(batch.images)
    # Per-item figures are lists over the batch; per-layer ones (unit count, photos) are not.
    metrics = {name: [value[item]] if isinstance(value, list) and len(value) == items else value
               for name, value in batch.metrics.items()}
    return Result(
        config=request.config(), model=batch.model, images=[batch.images[item]],
        checkpoints={step: [images[item]] for step, images in batch.checkpoints.items()},
        steps=batch.steps, activation=[batch.activation[item]], loss=[batch.loss[item]],
        metrics=metrics, elapsed_s=batch.elapsed_s / items, created=batch.created,
        device=batch.device, precision=batch.precision)


def compute_batch(model: LoadedModel, request: RunRequest,
                  progress: Progress | None = None) -> Result:
    """One batch of units with the quality figures a unit's page shows (robust activation
    against the photo set's maximum, robust rank), measured for the whole batch at once: they
    make the atlas sortable by a figure noise cannot win. One seed per unit, so no specificity.
    The work of one batch for both engines, and of the report's accentuated exemplars (whose
    `accentuated_from` the figures join)."""
    result = compute_result(request, model, progress)
    result.metrics = {**result.metrics, **result_metrics(model, result)}
    return result


ENGINES = ("local", "ray")
# Threads that encode and write finished units, beside the one that optimises.
WRITERS = max(1, min(8, (os.cpu_count() or 2) // 2))
AUTO_CAP = 64  # the most units "auto" puts in one batch


def auto_batch_units(model: LoadedModel, layer: str, unit: int, preset: str = DEFAULT_PRESET,
                     steps: int | None = None, tokens: str | int = "patch",
                     sharing: int = 1) -> int:
    """Units per batch that fit in the memory free now on the model's device, shared by
    `sharing` workers (vitviz.rendering.batching: one probe step counts the bytes per unit)."""
    objective = objectives.neuron(layer, unit, tokens)
    settings = resolve_preset(preset, **({"steps": steps} if steps is not None else {}))
    settings.check()
    per_unit = saved_bytes_per_item(model, objective, settings)
    return items_that_fit(per_unit, free_bytes(model.device) // max(sharing, 1), AUTO_CAP)


MAX_WORKERS = 64


def check_atlas(model, layer: str, units: Sequence[int], seed: int = 0,
                preset: str = DEFAULT_PRESET, steps: int | None = None,
                tokens: str | int = "patch", engine: str = "local", workers: int = 2,
                batch_units: int | None = 8, accentuate: int | None = None) -> None:
    """Everything an atlas is asked for, checked before any key, batch or probe step: the
    layer, units and token mode (the objectives' own check), the run settings (steps 0 is
    refused, and so is a photo rank out of range), the engine and its workers, the batch
    size. `model`: a LoadedModel or its card."""
    if engine not in ENGINES:
        raise UserError(f"engine '{engine}' is unknown: use one of {', '.join(ENGINES)}.")
    if not (isinstance(workers, int) and 1 <= workers <= MAX_WORKERS):
        raise UserError(f"workers must be 1 to {MAX_WORKERS} (got {workers!r})")
    if batch_units is not None and not (isinstance(batch_units, int)
                                        and 1 <= batch_units <= MAX_ITEMS):
        raise UserError(f"units per batch must be 1 to {MAX_ITEMS}, or auto "
                        f"(got {batch_units!r})")
    if not units:
        raise UserError("an atlas needs at least one unit")
    objectives.neuron(layer, tuple(units), tokens).validate(lambda name: find_layer(model, name))
    unit_request(model.registry_name, layer, units[0], seed, preset, steps, tokens,
                 accentuate=accentuate).check()


def check_plan(model, plan: dict[str, Sequence[int]], *settings) -> None:
    """`check_atlas` for every layer of `plan`: a job is refused whole, before anything runs
    or is written. `settings`: check_atlas's, after the units."""
    if not plan:
        raise UserError("an atlas needs at least one layer")
    for layer, units in plan.items():
        check_atlas(model, layer, units, *settings)


def start_engine(engine: str, workers: int = 2) -> None:
    """Join or start Ray for `engine="ray"` (nothing for the local engine): a missing or
    unreachable Ray is said before any work, bar or cache."""
    if engine == "ray":
        from vitviz.data.ray_engine import start

        start(workers)


def run_atlas(model: LoadedModel, layer: str, units: Sequence[int], cache: ResultCache, *,
              progress: AtlasProgress | None = None, **settings) -> Iterator[tuple[int, Result]]:
    """Visualise `units` of `layer`; yields (unit, result) as each batch finishes. Units
    already in the cache are skipped. The atlas of one layer: `run_layers`, which takes the
    settings (seed, preset, steps, tokens, batch_units, engine, workers, minimise,
    accentuate)."""
    for _, unit, result in run_layers(model, {layer: units}, cache, progress=progress,
                                      **settings):
        yield unit, result


def check_room(cache: ResultCache, sample: Sequence[str], units: int, missing: int) -> None:
    """Refuse a job whose `units` would not all fit under the cache's size limit at the size
    of the stored runs `sample`: the cache would evict the job's own first units to store its
    last (least recently used first), so a resumed job would compute them again, forever. And
    one whose `missing` units (those still to compute) would fill the cache's disk first: it
    would stop part-way on a full disk, hours in."""
    each = sum(cache.stored_bytes(key) for key in sample) / max(len(sample), 1)
    needed = math.ceil(each * units * 1.1)  # diskcache's own files, and units that differ
    if needed > cache.size_limit:
        raise UserError(
            f"{units} units at about {each / 2**20:.1f} MiB each need about "
            f"{needed / 2**30:.1f} GiB of result cache, above its size limit of "
            f"{cache.size_limit / 2**30:.1f} GiB: the job would evict its own units. Set "
            f"VITVIZ_CACHE_SIZE_LIMIT={needed} (bytes) or more, or run fewer units at a time")
    more, free = each * missing * 1.1, shutil.disk_usage(cache.path).free
    if more > free:
        raise UserError(
            f"{missing} units still to compute at about {each / 2**20:.1f} MiB each need about "
            f"{more / 2**30:.1f} GiB more, and the disk under {cache.path} has "
            f"{free / 2**30:.1f} GiB free: free some space, point --cache at a larger disk, or "
            f"run fewer units at a time")


def run_layers(model: LoadedModel, plan: dict[str, Sequence[int]], cache: ResultCache, *,
               seed: int = 0, preset: str = DEFAULT_PRESET, steps: int | None = None,
               tokens: str | int = "patch", batch_units: int | None = 8,
               engine: str = "local", workers: int = 2, progress: AtlasProgress | None = None,
               minimise: bool = False, accentuate: int | None = None
               ) -> Iterator[tuple[str, int, Result]]:
    """The atlas of the layers in `plan` (layer -> units, e.g. from `match_layers`) as one
    job: the units not in the cache, `batch_units` at a time, one layer after the other;
    yields (layer, unit, result) as each batch finishes and tells `progress` the units done
    and to do over the whole job. With `minimise`, the pictures of what suppresses each unit;
    with `accentuate` (a rank), each unit's accentuated exemplar from its photo view of that
    rank (its weakest views with `minimise`), as the unit's pages ask for it.

    Every layer is checked before anything runs. A rerun after a kill at any point resumes:
    finished units are in the cache, an interrupted batch stored nothing.
    `batch_units=None` sizes each layer's batches to the memory free now (`auto_batch_units`).
    `engine="ray"` computes the batches of every layer on one pool of Ray actors (`workers`,
    vitviz.data.ray_engine); this process stores them as they come, in order, exactly as the
    local engine does."""
    check_plan(model, plan, seed, preset, steps, tokens, engine, workers, batch_units,
               accentuate)
    start_engine(engine, workers)
    # Each unit's single run and its key, made once: a whole model is tens of thousands.
    requests = {(layer, u): unit_request(model.registry_name, layer, u, seed, preset, steps,
                                         tokens, minimise, accentuate)
                for layer, units in plan.items() for u in units}
    keys = {where: request.key() for where, request in requests.items()}
    already = {key for key in keys.values() if key in cache}
    missing = len(keys) - len(already)
    if already:  # measured on a unit already there, before anything is computed
        check_room(cache, [next(iter(already))], len(keys), missing)
    chunks: list[tuple[str, list[int]]] = []
    for layer, units in plan.items():
        todo = [u for u in units if keys[layer, u] not in already]
        size = batch_units
        if size is None and todo:
            size = auto_batch_units(model, layer, todo[0], preset, steps, tokens,
                                    workers if engine == "ray" else 1)
        chunks += [(layer, todo[i:i + size]) for i in range(0, len(todo), size or 1)]
    batches = [RunRequest(model.registry_name, objectives.neuron(layer, tuple(chunk), tokens
                                                                 ).spec(),
                          (seed,) * len(chunk), preset, requests[layer, chunk[0]].overrides,
                          minimise=minimise, accentuate=accentuate)
               for layer, chunk in chunks]
    if engine == "ray":
        from vitviz.data.ray_engine import map_in_order

        results = map_in_order(model, "vitviz.surveys.atlas:compute_batch", batches, workers)
    else:
        results = (compute_batch(model, batch) for batch in batches)
    total = sum(len(chunk) for _, chunk in chunks)
    started, done = time.perf_counter(), 0

    def store(layer: str, unit: int, item: int, batch: Result) -> Result:
        single = item_result(batch, item, requests[layer, unit])
        cache.put(keys[layer, unit], single)
        return single

    def reported(layer: str, chunk: list[int], writes: list) -> Iterator:
        nonlocal done
        for unit, write in zip(chunk, writes):
            yield layer, unit, write.result()
        done += len(chunk)
        if progress:
            progress(done, total, time.perf_counter() - started)

    # A batch's pictures are encoded and written while the next batch optimises (PNG, JPEG and
    # zlib let go of the GIL): on a fast GPU they can take longer than the steps. A batch is
    # reported once all of it is stored; a kill loses at most the batch still optimising.
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="vitviz-atlas-write"
                            ) as writers:
        stored: deque = deque()
        for index, ((layer, chunk), result) in enumerate(zip(chunks, results)):
            writes = [writers.submit(store, layer, unit, item, result)
                      for item, unit in enumerate(chunk)]
            if index == 0 and not already:
                # The first batch's size, measured before the next one's writes could evict it.
                for write in writes:
                    write.result()
                check_room(cache, [keys[layer, unit] for unit in chunk], len(keys),
                           missing - len(chunk))
            stored.append((layer, chunk, writes))
            if len(stored) == 2:
                yield from reported(*stored.popleft())
        while stored:
            yield from reported(*stored.popleft())


def read_units(model: LoadedModel, layer: str, units: Sequence[int], cache: ResultCache, *,
               seed: int = 0, preset: str = DEFAULT_PRESET, steps: int | None = None,
               tokens: str | int = "patch", judge_name: str | None = None,
               progress: AtlasProgress | None = None) -> dict[int, dict]:
    """The independent judge's reading (vitviz.quality.reading) of each of `units` whose atlas
    runs are in the cache both ways, driven up and driven down; the others are left out. A
    reading is stored with the unit's maximising run, so it is made once, and the pages show
    it as a figure of the unit beside its picture."""
    from vitviz.quality.judge import get_judge, independent_judge
    from vitviz.quality.reading import keep_reading

    judge_name = judge_name or independent_judge(model.registry_name)
    get_judge(judge_name)
    found: dict[int, dict] = {}
    started = time.perf_counter()
    for done, unit in enumerate(units, 1):
        up, down = (unit_request(model.registry_name, layer, unit, seed, preset, steps, tokens,
                                 minimise) for minimise in (False, True))
        result, suppressing = cache.get(up.key()), cache.get(down.key())
        if result is not None and suppressing is not None:
            found[unit], made = keep_reading(model, result, suppressing, judge_name)
            if made:
                cache.put(up.key(), result)
        if progress:
            progress(done, len(units), time.perf_counter() - started)
    return found


def reading_figure(result: Result | None, judge_name: str, photo_set_id: str) -> float | None:
    """A unit's photo-disjoint score with its pictures as references, where its reading is
    stored (`read_units`), else None."""
    from vitviz.quality.reading import stored_reading

    reading = stored_reading(result, judge_name, photo_set_id) if result is not None else None
    return reading["photo_disjoint"]["pictures"] if reading else None
