"""Quality figures for visualisations, measured without humans, that noise cannot win.

Raw activation rewards adversarial noise: pixel ascent reaches huge activations with images
that mean nothing, to the model or to anyone. So the figures shown anywhere are these:

- robust activation: the target's mean over slightly shifted and zoomed views of the image,
  as a multiple of the unit's maximum over real photos and their crops. Adversarial pixel
  patterns lose their activation under a few pixels of shift; real features keep it.
- robust rank: the target unit's median rank among all units of its layer over the same views
  (1 = the image drives this unit more than any other: it is *specific* to it).
- specificity: images of several units, two or more seeds each, compared in the feature space
  of a second, independent model (MobileNetV2's pooled last block). Noise images all look alike
  to that model, so same-unit similarity alone proves nothing (pure noise scores 0.98); the
  figures are its margin over different-unit similarity, and the identification rate: how
  often seed A's image of unit u is nearer to seed B's image of u than to every seed-B image
  of another unit (chance is 1 / number of units).
- plain colour (vitviz.quality.plain_colour): the unit's value on a flat field in the colour of
  its strongest photo views. Some units want a colour, not a shape; a picture that drives its
  unit less than a plain colour does has not found what the unit wants.
- the judge's two-alternative test (vitviz.quality.judge): do the pictures tell which of two photos
  drives the unit more?

The raw activation stays available (it is what the optimiser climbs, and the activation curves
show it), but no table or headline reports it as quality.

`quality_figures` is the one place these figures are computed: `result_metrics` (stored with a
run, and so what every page shows) and the report (vitviz.surveys.report) both call it.
"""
from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vitviz.models.forward import Activations, activations
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.tokens import unit_values
from vitviz.quality import judge
from vitviz.quality.plain_colour import plain_colour_values
from vitviz.rendering.objectives import UNIT_TYPES, from_spec, item_units, neuron
from vitviz.rendering.transforms import augment, build_transforms

FEATURE_MODEL = "mobilenet_v2"  # a key of vitviz.quality.judge.FEATURE_SPACES: its pooled last conv block


def as_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stored pictures (uint8 HxWx3 each, as `Result.images`) as [0, 1] images [N, 3, H, W]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def embed(images: torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
    """Unit-length MobileNetV2 features [N, 1280] of [0, 1] images [N, 3, H, W] (or uint8 HxWx3)."""
    if not isinstance(images, torch.Tensor):
        images = as_tensor(images)
    # The same feature extraction as the judge's, with the specificity model.
    return judge.embed(images, FEATURE_MODEL)


def specificity(embeddings: torch.Tensor) -> dict:
    """How unit-specific the images are, from embeddings [units, seeds, F] (unit-length).

    same_unit: mean similarity of two seeds' images of one unit; different_unit: of two seeds'
    images of different units; specificity: their difference; identification: see the module
    docstring. The last three need at least two units.
    """
    units, seeds, _ = embeddings.shape
    if seeds < 2:
        raise ValueError("specificity needs at least two seeds per unit")
    sim = torch.einsum("uaf,vbf->uavb", embeddings, embeddings)  # [u, a, v, b]
    pairs = [(a, b) for a, b in itertools.permutations(range(seeds), 2)]
    same = torch.stack([sim[u, a, u, b] for u in range(units) for a, b in pairs]).mean()
    figures = {"same_unit": float(same), "units": units, "seeds": seeds}
    if units < 2:
        return figures
    different = torch.stack([
        sim[u, a, v, b] for u in range(units) for v in range(units) if u != v for a, b in pairs
    ]).mean()
    hits = []
    for u in range(units):
        others = [v for v in range(units) if v != u]
        for a, b in pairs:
            hits.append(bool(sim[u, a, u, b] > sim[u, a, others, b].max()))
    figures.update(
        different_unit=float(different),
        specificity=float(same - different),
        identification=float(np.mean(hits)),
        chance=1.0 / units,
    )
    return figures


# Views for the robustness check: the kind of change a real object survives (a shift by a few
# pixels, 10% zoom) but adversarial pixel patterns do not.
ROBUST_VIEWS = 8
_VIEW_TRANSFORMS = (("pad", {"width": 8}), ("jitter", {"pixels": 16}), ("scale", {"low": 0.9, "high": 1.1}))


def robust_views(images: torch.Tensor, first: int = 0) -> torch.Tensor:
    """[N, 3, H, W] -> [N * ROBUST_VIEWS, 3, h, w]: seeded shifted and zoomed views of each image.

    The shifts are fractions of the image (pad 1/28, jitter 1/14 of the side: 8 and 16 px at
    224), so a larger canvas is checked as strictly as the model's own size. Image i of a batch
    that starts at position `first` gets the views of position first + i, however it is split.
    """
    side = images.shape[-1]
    specs = [(name, {key: max(1, round(value * side / 224)) if key in ("width", "pixels") else value
                     for key, value in kwargs.items()})
             for name, kwargs in _VIEW_TRANSFORMS]
    rngs = [torch.Generator().manual_seed(1000 + first + i) for i in range(len(images))]
    return augment(images, build_transforms(specs), rngs, ROBUST_VIEWS, 0.0)


@torch.no_grad()
def robust_activation(model: LoadedModel, objective, images: torch.Tensor,
                      batch_size: int = 64) -> list[float]:
    """Mean objective value over `ROBUST_VIEWS` randomly shifted and zoomed views of each image.

    Raw activation rewards adversarial noise; activation that survives small shifts and zooms
    is what a visualisation of a real feature keeps (the views are seeded, so this is exact).
    """
    return [float(v) for v in _robust_measure(model, objective, None, images, batch_size)[0]]


@torch.no_grad()
def robust_figures(model: LoadedModel, layer: str, units: Sequence[int], images: torch.Tensor,
                   tokens: str | int = "patch", batch_size: int = 64,
                   bottom: bool = False) -> dict:
    """Robust activation and robust rank of each image's own unit, from one set of views;
    with `bottom`, the rank counts from the layer's lowest unit (for minimising pictures)."""
    objective = neuron(layer, tuple(int(u) for u in units), tokens)
    activation, ranks = _robust_measure(model, objective, (layer, units, tokens, bottom), images,
                                        batch_size)
    return {"robust_activation": [float(v) for v in activation],
            "robust_rank": [float(r) for r in ranks]}


def _robust_measure(model, objective, rank_of, images, batch_size):
    # Items are measured a few at a time so that memory stays bounded for any batch of images.
    per_chunk = max(1, batch_size // ROBUST_VIEWS)
    activation, ranks = [], []
    for start in range(0, len(images), per_chunk):
        chunk = images[start:start + per_chunk]
        views = robust_views(chunk, start)
        layers = objective.layers
        acts = activations(model, model.to_input(views), layers)
        acts = Activations({k: v.float() for k, v in acts.items()}, acts.prefix_tokens)
        sub = _objective_slice(objective, start, len(chunk))
        activation += sub(acts, len(chunk)).view(len(chunk), ROBUST_VIEWS).mean(dim=1).tolist()
        if rank_of is not None:
            layer, units, tokens, bottom = rank_of
            values = unit_values(acts[layer], tokens, acts.prefix_tokens)  # [views, units]
            if bottom:
                values = -values
            own_units = torch.as_tensor([int(u) for u in units[start:start + len(chunk)]])
            own = values[torch.arange(len(values)), own_units.repeat_interleave(ROBUST_VIEWS)]
            rank = (values > own[:, None]).sum(dim=1).add(1).float()
            ranks += rank.view(len(chunk), ROBUST_VIEWS).median(dim=1).values.tolist()
    return activation, ranks


def _objective_slice(objective, start: int, count: int):
    """The objective for items start..start+count of a batch (per-item units are sliced)."""
    spec = objective.spec()
    unit = spec.get("unit")
    if isinstance(unit, (list, tuple)):
        spec = {**spec, "unit": list(unit)[start:start + count]}
        if len(spec["unit"]) == 1:
            spec["unit"] = spec["unit"][0]
    return from_spec(spec)


def relative_activation(reached: Sequence[float], unit_max: Sequence[float]) -> list[float]:
    """Activation reached as a multiple of the unit's maximum over the photo set."""
    return [r / m if m > 0 else float("nan") for r, m in zip(reached, unit_max)]


def finite_median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN: a unit with no positive photo maximum has no relative
    scale); NaN when there are none. The medians every page and the report show."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


@dataclass(frozen=True)
class Pictures:
    """Pictures of units of one layer, and the photo set they are measured against."""

    layer: str
    units: Sequence[int]  # each picture's unit
    images: torch.Tensor  # [N, 3, H, W] in [0, 1]
    photos: object  # the layer's photo statistics (vitviz.data.photo_sets.examples_for)
    tokens: str | int = "patch"


def quality_figures(model: LoadedModel, pictures: Pictures | Sequence[Pictures],
                    minimise: bool = False, reached: Sequence[float] | None = None) -> dict:
    """The quality figures of pictures, per picture, in the order given: the one place they are
    computed, for `result_metrics` (so the dashboard's pages) and the report.

    Several `Pictures` (of several layers) are measured each on its own and pooled. Per picture:
    `unit_max_over_photos`, `robust_activation`, `relative_robust_activation` (their ratio) and
    `robust_rank`; `plain_colour` (vitviz.quality.plain_colour: the unit's value on a flat
    field in the colour of one of its extreme photo views), `relative_plain_colour` and
    `beyond_plain_colour` (whether the picture's robust activation passes it); with `reached`
    (each picture's final raw activation), `alive`: whether it ended above the unit's photo
    maximum. `specificity` (see `specificity`) over every unit with two pictures or more,
    when there are two such units or more. Minimising pictures (`minimise`) are measured
    against the photos' minimum instead (`unit_min_over_photos`, `below_photo_min`), their
    rank counted from the bottom of the layer, and their plain colour is the most suppressing
    of the unit's weakest views' colours.
    """
    sets = [pictures] if isinstance(pictures, Pictures) else list(pictures)
    robust: dict[str, list[float]] = {"robust_activation": [], "robust_rank": []}
    plain: list[float] = []
    for found in sets:
        measured = robust_figures(model, found.layer, found.units, found.images, found.tokens,
                                  bottom=minimise)
        for key in robust:
            robust[key] += measured[key]
        plain += plain_colour_values(model, found.layer, found.units, found.photos,
                                     found.tokens, bottom=minimise)
    reached_robustly = robust["robust_activation"]
    if minimise:
        unit_min = [found.photos.unit_min(u) for found in sets for u in found.units]
        return {"unit_min_over_photos": unit_min,
                "robust_activation": reached_robustly,
                "below_photo_min": [r < m for r, m in zip(reached_robustly, unit_min)],
                "robust_rank": robust["robust_rank"],
                "plain_colour": plain,
                "beyond_plain_colour": [r < p for r, p in zip(reached_robustly, plain)]}
    unit_max = [found.photos.unit_max(u) for found in sets for u in found.units]
    figures = {
        "unit_max_over_photos": unit_max,
        "robust_activation": reached_robustly,
        "relative_robust_activation": relative_activation(reached_robustly, unit_max),
        "robust_rank": robust["robust_rank"],
        "plain_colour": plain,
        "relative_plain_colour": relative_activation(plain, unit_max),
        "beyond_plain_colour": [r > p for r, p in zip(reached_robustly, plain)],
    }
    if reached is not None:
        figures["alive"] = [r > m for r, m in zip(reached, unit_max)]
    by_unit: dict[tuple[int, int], list[int]] = {}
    for number, found in enumerate(sets):
        for index, unit in enumerate(found.units):
            by_unit.setdefault((number, unit), []).append(index)
    per_unit = min(len(v) for v in by_unit.values())
    if per_unit >= 2 and len(by_unit) >= 2:
        embeddings = [embed(found.images) for found in sets]
        grouped = torch.stack([embeddings[number][idx[:per_unit]]
                               for (number, _), idx in by_unit.items()])
        figures["specificity"] = specificity(grouped)
    return figures


def has_quality_figures(result) -> bool:
    """Whether `result.metrics` already holds the figures of `result_metrics`, measured on the
    photo set configured now (a lone `robust_activation`, as the Dataset examples page once
    stored, is not all of them; figures measured on another set are stale: the pictures of a
    run that reads no photos are the same whatever the set, so its cache key leaves it out)."""
    from vitviz.data.photo_sets import current_photo_set_id

    return ("robust_rank" in result.metrics
            and result.metrics.get("photo_set_id") == current_photo_set_id())


def result_metrics(model: LoadedModel, result, progress=None, photos=None) -> dict:
    """Quality figures of a finished neuron or channel run (empty for other objectives): those
    of `quality_figures`, and what they were measured against.

    Photo-relative figures use the configured photo set (vitviz.data.photo_sets: the built-in
    photos, or the index of $VITVIZ_PHOTOS), named in the figures as `photo_set`, or `photos`,
    that set's statistics of the run's layer when the caller holds them already. A
    minimising run's pictures are measured against the photos' minimum instead of their
    maximum (`below_photo_min`), and their rank counts from the bottom of the layer."""
    from vitviz.data.photo_sets import current_photo_set_id, examples_for

    objective = from_spec(result.config["objective"])
    if objective.spec()["type"] not in UNIT_TYPES:
        return {}
    layer = objective.layer
    tokens = getattr(objective, "tokens", "patch")
    seeds = result.seeds
    units = item_units(objective, len(seeds))
    images = as_tensor(result.images)
    stats = photos if photos is not None else examples_for(model, layer, tokens, progress)
    minimise = bool(result.config.get("minimise", False))
    return {
        "layer_units": find_layer(model, layer).units,
        "photos": len(stats.photo_names),
        "photo_set": stats.label,
        "photo_set_id": current_photo_set_id(),
        **({"minimise": True} if minimise else {}),
        "activation": [curve[-1] for curve in result.activation],
        **quality_figures(model, Pictures(layer, units, images, stats, tokens), minimise),
    }
