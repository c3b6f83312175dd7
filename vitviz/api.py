"""The notebook API: one call from a model name to images, without Streamlit."""
from __future__ import annotations

from typing import Sequence

from vitviz.models.layers import default_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.registry import load_model
from vitviz.rendering import objectives
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache
from vitviz.store.results import Result
from vitviz.store.runs import Progress, RunRequest, cached_result, compute_result


def visualise(
    model: str | LoadedModel,
    layer: str | None = None,
    unit: int | Sequence[int] = 0,
    seeds: Sequence[int] = (0,),
    preset: str = DEFAULT_PRESET,
    tokens: str | int = "patch",
    objective: objectives.Objective | None = None,
    cache: ResultCache | None = None,
    progress: Progress | None = None,
    minimise: bool = False,
    accentuate: int | None = None,
    **overrides,
) -> Result:
    """Visualise `unit` of `layer` (a neuron on token layers, a channel on feature maps).

    >>> result = visualise("dinov2_vits14", "encoder.layers.encoder_layer_6.mlp.1", unit=100,
    ...                    seeds=[0, 1], steps=128)
    >>> result.images[0]  # HxWx3 uint8

    `overrides` are preset knobs (steps, lr, canvas, ensemble, ...). Give `objective` to
    optimise anything else (sums, directions, logits, or an objective of your own registered
    with `vitviz.rendering.objectives.register`, which the cache serves like the built-ins).
    With `minimise`, the pictures of what drives it down (what suppresses the unit). With
    `accentuate` (a rank, 0 the strongest), an accentuated exemplar: the unit's photo of that
    rank, changed only as much as it takes to drive the unit harder
    (vitviz.rendering.accentuate). With a `cache`, a repeated call is served from disk.
    """
    loaded = model if isinstance(model, LoadedModel) else None
    name = loaded.registry_name if loaded else model
    if objective is None:
        if loaded is None:
            loaded = load_model(name)
        layer = layer or default_layer(loaded)
        objective = objectives.neuron(layer, unit, tokens)
    request = RunRequest(name, objectives.checked_spec(objective), tuple(seeds), preset, overrides,
                         minimise=minimise, accentuate=accentuate)
    return _result(request, loaded, cache, progress)


def _result(request: RunRequest, loaded: LoadedModel | None, cache: ResultCache | None,
            progress: Progress | None) -> Result:
    if loaded is not None and cache is None:
        return compute_result(request, loaded, progress)
    result, _ = cached_result(request, cache, loader=lambda name: loaded or load_model(name),
                              progress=progress)
    return result


def judge_unit(
    model: str | LoadedModel,
    layer: str | None = None,
    unit: int = 0,
    seeds: Sequence[int] = (0,),
    tokens: str | int = "patch",
    judge: str | None = None,
    cache: ResultCache | None = None,
    progress: Progress | None = None,
    **overrides,
) -> dict:
    """Visualise `unit` driven up and down with the default method, and ask an independent
    judge whether those pictures tell which of two photos drives the unit more, beside the
    unit's natural exemplars (vitviz.quality.reading).

    >>> reading = judge_unit("dinov2_vits14", "encoder.layers.encoder_layer_6.mlp.1", unit=100)
    >>> reading["photo_disjoint"]
    {'pictures': 0.75, 'exemplars': 0.8, 'together': 0.85, 'accentuated': 0.85}
    # chance 0.5; "together": the pictures beside the exemplars, as Dataset examples shows them;
    # "accentuated": the exemplars each mixed with the pictures (vitviz.rendering.picture_mix)

    `judge` names one of vitviz.quality.judge.JUDGES (default: the first that shares nothing
    with the model); `overrides` are preset knobs, as in `visualise`. With a `cache`, the
    pictures come from it when they were made before (by the pages, the atlas or the CLI) and
    the reading is stored with the maximising run.
    """
    from vitviz.data.photo_sets import configured_folder, indexed_examples
    from vitviz.quality.judge import get_judge, independent_judge
    from vitviz.quality.reading import keep_reading
    from vitviz.rendering.loop import prepare

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    layer = layer or default_layer(loaded)
    judge = judge or independent_judge(loaded.registry_name)
    objective = objectives.neuron(layer, unit, tokens)
    requests = [RunRequest(loaded.registry_name, objectives.checked_spec(objective), tuple(seeds),
                           DEFAULT_PRESET, overrides, minimise=minimise)
                for minimise in (False, True)]
    # Everything a person can get wrong fails here, before a picture is drawn: the judge's
    # name, the unit, the settings, and a photo folder without its index. The built-in photos
    # are measured only if a reading has to be made.
    get_judge(judge)
    prepare(loaded, objective)
    requests[0].check()
    folder = configured_folder()
    photos = indexed_examples(loaded, layer, tokens, folder) if folder is not None else None
    runs = [_result(request, loaded, cache, progress) for request in requests]
    reading, made = keep_reading(loaded, *runs, judge_name=judge, photos=photos)
    if made and cache is not None:
        cache.put(requests[0].key(), runs[0])
    return reading
