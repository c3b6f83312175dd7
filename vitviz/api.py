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
    if loaded is not None and cache is None:
        return compute_result(request, loaded, progress)
    result, _ = cached_result(request, cache, loader=lambda _: loaded or load_model(name), progress=progress)
    return result
