"""Quality figures for visualisations, measured without humans.

Activation alone rewards adversarial noise: raw pixel ascent reaches huge activations with
images that mean nothing, to the model or to anyone. So every figure here comes with a check
that noise cannot pass:

- relative activation: what the visualisation reaches, as a multiple of the unit's maximum over
  real photos and their crops (how strong, on a natural scale); and the same for the mean over
  slightly shifted and zoomed views of the image (robust activation), which adversarial pixel
  patterns lose and real features keep;
- unit rank: where the target unit ranks among all units of its layer on the visualisation
  (1 = the image drives this unit more than any other: it is *specific*);
- consistency: images of one unit from different seeds, compared in the feature space of a
  second, independent model (MobileNetV2's penultimate layer). Noise images all look alike to
  that model, so a high same-unit similarity alone proves nothing; the figures that count are
  the gap to different-unit similarity and the identification rate: how often seed A's image of
  unit u is nearer to seed B's image of u than to every seed-B image of another unit (chance is
  1 / number of units).
"""
from __future__ import annotations

import functools
import itertools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vitviz.hooks import run_and_capture
from vitviz.models import LoadedModel, load_model
from vitviz.objectives import unit_values

FEATURE_MODEL = "mobilenet_v2"
FEATURE_LAYER = "features"  # the last conv block; average-pooled, it is the classifier's input


@functools.lru_cache(maxsize=2)
def _feature_model(device: str) -> LoadedModel:
    return load_model(FEATURE_MODEL, device)


@torch.no_grad()
def embed(images: torch.Tensor | Sequence[np.ndarray], batch_size: int = 32) -> torch.Tensor:
    """Unit-length MobileNetV2 features [N, 1280] of [0, 1] images [N, 3, H, W] (or uint8 HxWx3)."""
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    model = _feature_model("cpu")
    features = []
    for batch in images.split(batch_size):
        act = run_and_capture(model.module, model.to_input(batch.float()), [FEATURE_LAYER], True)
        features.append(act[FEATURE_LAYER].mean(dim=(2, 3)))
    return F.normalize(torch.cat(features), dim=1)


def pairwise_similarity(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity matrix [N, N] of unit-length embeddings."""
    return embeddings @ embeddings.T


def consistency(embeddings: torch.Tensor) -> dict:
    """Cross-seed consistency of embeddings [units, seeds, F] (unit-length).

    same_unit: mean similarity of two seeds' images of one unit; different_unit: of two seeds'
    images of different units; identification: see the module docstring (needs >= 2 units).
    """
    units, seeds, _ = embeddings.shape
    if seeds < 2:
        raise ValueError("consistency needs at least two seeds per unit")
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
        gap=float(same - different),
        identification=float(np.mean(hits)),
        chance=1.0 / units,
    )
    return figures


@torch.no_grad()
def unit_ranks(model: LoadedModel, layer: str, units: Sequence[int], images: torch.Tensor,
               tokens: str | int = "patch") -> list[int]:
    """Rank (1 = strongest) of each image's target unit among all units of `layer` on that image."""
    act = run_and_capture(model.module, model.to_input(images), [layer],
                          stop_early=True)[layer].float()
    values = unit_values(act, tokens)
    index = torch.arange(len(units))
    own = values[index, torch.as_tensor(list(units))]
    return (values > own[:, None]).sum(dim=1).add(1).tolist()


# Views for the robustness check: the kind of change a real object survives (a shift by a few
# pixels, 10% zoom) but adversarial pixel patterns do not.
ROBUST_VIEWS = 8
_VIEW_TRANSFORMS = (("pad", {"width": 8}), ("jitter", {"pixels": 16}), ("scale", {"low": 0.9, "high": 1.1}))


@torch.no_grad()
def activation(model: LoadedModel, objective, images: torch.Tensor) -> list[float]:
    """The objective's value on each [0, 1] image, as the network sees it (one forward pass)."""
    acts = run_and_capture(model.module, model.to_input(images),
                           objective.layers, True)
    return objective({k: v.float() for k, v in acts.items()}, len(images)).tolist()


@torch.no_grad()
def robust_activation(model: LoadedModel, objective, images: torch.Tensor) -> list[float]:
    """Mean objective value over `ROBUST_VIEWS` randomly shifted and zoomed views of each image.

    Raw activation rewards adversarial noise; activation that survives small shifts and zooms
    is what a visualisation of a real feature keeps (the views are seeded, so this is exact).
    """
    from vitviz.transforms import augment, build_transforms

    rngs = [torch.Generator().manual_seed(1000 + i) for i in range(len(images))]
    views = augment(images, build_transforms(_VIEW_TRANSFORMS), rngs, ROBUST_VIEWS, 0.0)
    layers = objective.layers
    acts = run_and_capture(model.module, model.to_input(views), layers, True)
    values = objective({k: v.float() for k, v in acts.items()}, len(images))
    return values.view(len(images), ROBUST_VIEWS).mean(dim=1).tolist()


def relative_activation(reached: Sequence[float], unit_max: Sequence[float]) -> list[float]:
    """Activation reached as a multiple of the unit's maximum over the photo set."""
    return [r / m if m > 0 else float("nan") for r, m in zip(reached, unit_max)]


_LAYER_CACHE: dict[tuple, object] = {}


def photo_statistics(model: LoadedModel, layer: str, tokens: str | int = "patch", progress=None):
    """The layer's activations on the photo set, measured once per process and model."""
    from vitviz.data import load_photos
    from vitviz.examples import measure_layer

    key = (id(model.module), layer, str(tokens))
    if key not in _LAYER_CACHE:
        _LAYER_CACHE[key] = measure_layer(model, layer, load_photos(), tokens, progress=progress)
    return _LAYER_CACHE[key]


def has_quality_figures(result) -> bool:
    """Whether `result.metrics` already holds the figures of `result_metrics`."""
    return "relative_activation" in result.metrics


def result_metrics(model: LoadedModel, result, progress=None) -> dict:
    """Quality figures of a finished neuron or channel run (empty for other objectives)."""
    from vitviz.objectives import from_spec

    objective = from_spec(result.config["objective"])
    if objective.spec()["type"] not in ("neuron", "channel"):
        return {}
    layer = objective.layer
    tokens = getattr(objective, "tokens", "patch")
    seeds = result.seeds
    units = list(objective.unit) if isinstance(objective.unit, tuple) else [objective.unit] * len(seeds)
    images = torch.from_numpy(np.stack(result.images)).permute(0, 3, 1, 2).float() / 255
    stats = photo_statistics(model, layer, tokens, progress)
    unit_max = [stats.unit_max(u) for u in units]
    reached = [curve[-1] for curve in result.activation]
    robust = robust_activation(model, objective, images)
    figures = {
        "activation": reached,
        "unit_max_over_photos": unit_max,
        "relative_activation": relative_activation(reached, unit_max),
        "robust_activation": robust,
        "relative_robust_activation": relative_activation(robust, unit_max),
        "rank": unit_ranks(model, layer, units, images, tokens),
        "layer_units": int(stats.values.shape[1]),
        "photos": len(stats.photo_names),
    }
    by_unit: dict[int, list[int]] = {}
    for index, unit in enumerate(units):
        by_unit.setdefault(unit, []).append(index)
    per_unit = min(len(v) for v in by_unit.values())
    if per_unit >= 2:
        embeddings = embed(images)
        grouped = torch.stack([embeddings[idx[:per_unit]] for idx in by_unit.values()])
        figures["consistency"] = consistency(grouped)
        figures["similarity"] = pairwise_similarity(embeddings).tolist()
    return figures
