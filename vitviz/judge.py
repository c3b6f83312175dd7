"""The judge: do a unit's pictures tell which of two photos drives the unit more?

Borowski et al. (ICLR 2021) showed people a unit's reference images and asked which of two
query photos drives the unit more (people scored 82% with Lucid's pictures of CNN units, 92%
with natural exemplars, 50% is chance). The Machine Interpretability Score (Zimmermann, Klindt
and Brendel 2024) replaces the person by a perceptual similarity model. vitviz does the same,
with a judge model that no other quality figure uses:

- queries: each of the `per_side` photos that drive the unit most (its strongest view, whole
  photo or crop) against each of the `per_side` photos that drive it least (their weakest view),
  ranked by the unit's drive (`vitviz.drive`): on a GELU layer, the post-activation with GELU's
  dip filled in, since on the dip the output's order is the reverse of the input's;
- references: the unit's pictures, each seen whole and as its four quarters (what a viewer
  sees when looking closer; Borowski et al. showed 9 references); or, as the baseline, its
  natural exemplars: its strongest views among the *other* photos, as many as there are
  picture views; or, as the control, another unit's pictures (or exemplars): the same test
  with references that should not help;
- decision: the query with the higher mean cosine similarity to the references, in the judge's
  feature space. The score is the fraction of pairs judged right (ties count half).

Pictures that explain the unit score near the exemplars and well above their control.

The photos come from a pool: the built-in set (`ViewPool`: whole photos and their crops, every
view's value known) or the activation index of the user's folder (`IndexPool`: the whole
images the index keeps at each unit's extremes).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from vitviz.errors import UserError
from vitviz.examples import LayerActivations, photo_views
from vitviz.layers import activations
from vitviz.models import LoadedModel, load_model

PER_SIDE = 3


@dataclass(frozen=True)
class Judge:
    model: str
    layer: str
    reduce: str  # "cls": token 0 of a token layer; "mean": spatial mean of a feature map

    @property
    def label(self) -> str:
        return f"{self.model} {self.layer} ({self.reduce})"


# DINOv2's final embedding is a strong perceptual similarity (DreamSim builds on DINO); the
# specificity figures use MobileNetV2, so that judge is kept apart from them by default.
JUDGES = {
    "dinov2": Judge("dinov2_vits14", "encoder.ln", "cls"),
    "mobilenet_v2": Judge("mobilenet_v2", "features", "mean"),
}
DEFAULT_JUDGE = "dinov2"


def get_judge(name: str) -> Judge:
    if name not in JUDGES:
        raise UserError(f"judge '{name}' is unknown: use one of {', '.join(JUDGES)}")
    return JUDGES[name]


@functools.lru_cache(maxsize=2)
def _judge_model(name: str) -> LoadedModel:
    return load_model(JUDGES[name].model, "cpu")


@torch.no_grad()
def embed(images: torch.Tensor, judge: str = DEFAULT_JUDGE, batch_size: int = 32) -> torch.Tensor:
    """Unit-length judge features [N, F] of [0, 1] images [N, 3, H, W] of any size."""
    spec = get_judge(judge)
    model = _judge_model(judge)
    features = []
    for batch in images.split(batch_size):
        act = activations(model, model.to_input(batch.float()), [spec.layer])[spec.layer].float()
        features.append(act[:, 0] if spec.reduce == "cls" else act.mean(dim=(2, 3)))
    return F.normalize(torch.cat(features), dim=1)


PICTURE_VIEWS = 5  # whole, and four quarters


def embed_pictures(images: torch.Tensor, judge: str = DEFAULT_JUDGE) -> torch.Tensor:
    """Judge features [N, PICTURE_VIEWS, F] of pictures [N, 3, H, W]: whole, then each quarter."""
    half = images.shape[-1] // 2
    quarters = torch.stack([images[:, :, y:y + half, x:x + half]
                            for y in (0, half) for x in (0, half)], dim=1)
    whole = embed(images, judge)[:, None]
    parts = embed(quarters.flatten(0, 1), judge).view(len(images), 4, -1)
    return torch.cat([whole, parts], dim=1)


def view_embeddings(photos: Sequence, judge: str = DEFAULT_JUDGE) -> torch.Tensor:
    """Judge features of every photo view (photo and crops, in `photo_views` order)."""
    images, _ = photo_views(photos, _judge_model(judge).preprocessing.size)
    return embed(images, judge)


@functools.lru_cache(maxsize=2)
def _builtin_views(judge: str) -> torch.Tensor:
    from vitviz.data import load_photos

    return view_embeddings(load_photos(), judge)


def pool_for(examples, judge: str = DEFAULT_JUDGE):
    """Where the judge draws a layer's queries and exemplars: the folder's index when the
    examples come from one (`vitviz.photo_sets`), else the built-in photos' views."""
    from vitviz.photo_sets import IndexedExamples

    if isinstance(examples, IndexedExamples):
        return IndexPool(examples.index, examples.layer, judge)
    return ViewPool(examples, _builtin_views(judge))


@dataclass(frozen=True)
class Queries:
    high: list  # the strong queries, as the pool's keys
    low: list  # the weak queries
    photos: frozenset  # photos the queries come from: never used as exemplars


class ViewPool:
    """The built-in photos: every view's value for every unit, and every view's judge features.
    Keys are view indices (`photo_views` order)."""

    def __init__(self, stats: LayerActivations, views: torch.Tensor):
        self.stats, self.views = stats, views

    def queries(self, unit: int, per_side: int = PER_SIDE) -> Queries:
        stats = self.stats
        values = stats.ranking[:, unit]
        photo_of = torch.tensor([view[0] for view in stats.views])
        n_photos = len(stats.photo_names)
        if n_photos < 2 * per_side + 1:
            raise UserError(f"the judge needs at least {2 * per_side + 1} photos, {n_photos} given")
        strongest = torch.full((n_photos,), -torch.inf).scatter_reduce(0, photo_of, values, "amax")
        weakest = torch.full((n_photos,), torch.inf).scatter_reduce(0, photo_of, values, "amin")
        high_photos = strongest.argsort(descending=True)[:per_side].tolist()
        low_photos = [p for p in weakest.argsort().tolist() if p not in high_photos][:per_side]

        def view_of(photo: int, pick) -> int:
            rows = (photo_of == photo).nonzero().flatten()
            return int(rows[pick(values[rows])])

        return Queries([view_of(p, torch.argmax) for p in high_photos],
                       [view_of(p, torch.argmin) for p in low_photos],
                       frozenset(high_photos + low_photos))

    def exemplars(self, unit: int, count: int, exclude: frozenset) -> list[int]:
        """The unit's `count` strongest views from photos not in `exclude`, one view per photo."""
        order = self.stats.ranking[:, unit].argsort(descending=True).tolist()
        chosen, used = [], set(exclude)
        for view in order:
            photo = self.stats.views[view][0]
            if photo not in used:
                chosen.append(view)
                used.add(photo)
            if len(chosen) == count:
                break
        return chosen

    def features(self, keys: Sequence[int]) -> torch.Tensor:
        return self.views[list(keys)]


class IndexPool:
    """An activation index of a folder (`VITVIZ_PHOTOS`): each unit's strongest and weakest
    whole images, as the index keeps them (k per unit). Keys are image paths; an image is read
    and embedded the first time a unit needs it, so a folder of any size costs only the images
    the judge looks at."""

    def __init__(self, index, layer: str, judge: str = DEFAULT_JUDGE):
        self.index, self.layer, self.judge = index, layer, judge
        self._features: dict = {}

    def queries(self, unit: int, per_side: int = PER_SIDE) -> Queries:
        high = [path for path, _ in self.index.top(self.layer, unit)][:per_side]
        low = [path for path, _ in self.index.top(self.layer, unit, bottom=True)
               if path not in high][:per_side]
        if len(high) < per_side or len(low) < per_side:
            raise UserError(f"the judge needs at least {2 * per_side + 1} indexed images, "
                            f"{self.index.count} given")
        return Queries(high, low, frozenset(high + low))

    def exemplars(self, unit: int, count: int, exclude: frozenset) -> list:
        """The unit's `count` strongest images outside `exclude`, among the k the index keeps."""
        chosen = [path for path, _ in self.index.top(self.layer, unit) if path not in exclude]
        if not chosen:
            raise UserError(f"the index keeps {self.index.settings.get('k')} images per unit, "
                            f"too few for the judge's exemplars: rebuild it with a larger --k")
        return chosen[:count]

    def features(self, keys: Sequence) -> torch.Tensor:
        from vitviz.data import centre_square, read_rgb

        missing = [key for key in dict.fromkeys(keys) if key not in self._features]
        if missing:
            size = _judge_model(self.judge).preprocessing.size
            images = torch.stack([centre_square(read_rgb(path), size) for path in missing])
            self._features.update(zip(missing, embed(images, self.judge)))
        return torch.stack([self._features[key] for key in keys])


def score(query: Queries, pool, references: torch.Tensor) -> float:
    """Fraction of (strong, weak) query pairs where the strong one is nearer the references."""
    high = (pool.features(query.high) @ references.T).mean(dim=1)
    low = (pool.features(query.low) @ references.T).mean(dim=1)
    margin = high[:, None] - low[None, :]
    return float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean())


def two_afc(pool, units: Sequence[int], pictures: Sequence[torch.Tensor] | None = None,
            count: int | None = None, per_side: int = PER_SIDE) -> dict:
    """Judge scores over `units` of one layer (chance 0.5).

    pool: where queries and exemplars come from (ViewPool: the built-in photos; IndexPool: a
    folder's index); pictures: per unit, judge features [K, F] of its pictures' views, or None
    for the exemplar figures alone, which then use `count` exemplars per unit (default K). Each
    unit's control is the next unit's references, cyclically.
    """
    units = list(units)
    if len(units) < 2:
        raise ValueError("the judge's control needs at least two units")
    if pictures is None and count is None:
        raise ValueError("give the pictures, or the number of exemplars to use instead")
    count = count or len(pictures[0])
    found = {"exemplars": [], "exemplars_control": []}
    if pictures is not None:
        found.update(pictures=[], pictures_control=[])
    for i, unit in enumerate(units):
        query = pool.queries(unit, per_side)
        other = units[(i + 1) % len(units)]
        own = pool.features(pool.exemplars(unit, count, query.photos))
        foreign = pool.features(pool.exemplars(other, count, query.photos))
        found["exemplars"].append(score(query, pool, own))
        found["exemplars_control"].append(score(query, pool, foreign))
        if pictures is not None:
            found["pictures"].append(score(query, pool, pictures[i]))
            found["pictures_control"].append(score(query, pool, pictures[(i + 1) % len(units)]))
    figures = {name: sum(values) / len(values) for name, values in found.items()}
    # Each unit's margin: a unit's nine pairs share its photos and pictures, so the margin's
    # noise is that of its units (vitviz.report gives their standard error), not of its pairs.
    figures["unit_margins"] = {
        kind: [a - b for a, b in zip(found[kind], found[f"{kind}_control"])]
        for kind in ("exemplars", "pictures") if kind in found}
    for kind, margins in figures["unit_margins"].items():
        figures[f"{kind}_margin"] = sum(margins) / len(margins)
    figures["units"] = len(units)
    figures["pairs_per_unit"] = per_side * per_side
    return figures
