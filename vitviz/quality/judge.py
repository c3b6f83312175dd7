"""The judge: do a unit's pictures tell which of two photos drives the unit more?

Borowski et al. (ICLR 2021) showed people a unit's maximising and minimising reference images
and asked which of two query photos drives the unit more (people scored 82% with Lucid's
pictures of CNN units, 92% with natural exemplars; 50% is chance). The Machine
Interpretability Score (Zimmermann, Klindt and Brendel 2024) replaces the person by a
perceptual similarity model, on tasks built as the IMI benchmark builds them. vitviz does the
same:

- per unit, `TASKS` tasks; task i pairs the unit's i-th strongest view of a photo (q+, whole
  photo or crop) with its i-th weakest (q-), ranked by the unit's drive (`vitviz.models.drive`: on a
  GELU layer the post-activation with GELU's dip filled in, since on the dip the output's
  order is the reverse of the input's);
- references: `REFERENCES` maximising (E+) and as many minimising (E-) ones: the unit's
  maximising and minimising pictures, each seen whole and then by its quarters (what a viewer
  sees when looking closer); or, as the baseline, its natural exemplars: the next strongest and
  weakest views after the queries, so that the queries are more extreme than the references;
  or, as the control, another unit's references, which should not help (references made from
  photos, such as accentuated exemplars, leave out those that a query set's natural exemplars
  could not be: `control_references`); or the pictures and the natural exemplars together,
  each kind weighing the same (`side_by_side`), as the Dataset examples page shows them to a
  person (their control: another unit's two together);
- decision: with s the mean cosine similarity in the judge's feature space, the task is right
  when [s(q+, E+) - s(q+, E-)] - [s(q-, E+) - s(q-, E-)] > 0 (ties count half). Subtracting
  the similarity to E- cancels what a query's kind alone would earn (a textured crop is near
  every textured reference): uninformative references score 50%.

Two query sets, the same queries with different exemplars:

- "standard": exemplars are any views that are not queries, so a crop of a query's photo may
  serve as an exemplar (IMI's construction, on whole photos and crops);
- "photo_disjoint": exemplars come only from photos that no query comes from, so an exemplar
  cannot win by being part of the same photo as the query.

The judge is a network that is neither the visualised model nor shares its weights or
training, and no other vitviz figure uses it (`independent_judge`): a picture optimised
against a network shares that network's features with the photos that drive the unit,
whether or not anything else can see them. An in-model judge is kept only as a labelled
diagnostic.

The photos come from a pool: the built-in set (`ViewPool`: whole photos and their crops, every
view's value known) or the activation index of the user's folder (`IndexPool`: the whole
images the index keeps at each unit's extremes).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from vitviz.data.examples import LayerActivations, photo_views
# The choice of queries and natural exemplars, which pictures read too.
from vitviz.data.references import (  # noqa: F401
    REFERENCES,
    TASKS,
    Tasks,
    natural_references,
    tasks,
)
from vitviz.errors import UserError
from vitviz.models.forward import activations
from vitviz.models.loaded import LoadedModel
from vitviz.models.registry import load_model, parse_model_name

QUERY_SETS = ("standard", "photo_disjoint")


@dataclass(frozen=True)
class FeatureSpace:
    """A network's image features: a layer, reduced to one vector per image."""

    model: str
    layer: str
    reduce: str  # "cls": token 0 of a token layer; "mean": spatial mean of a feature map
    # Networks that share weights or training belong to one family: none judges its own.
    family: str

    @property
    def label(self) -> str:
        return f"{self.model} {self.layer} ({self.reduce})"


FEATURE_SPACES = {
    # ImageNet CNNs from registry packages, with nothing in common with the ViTs vitviz draws.
    "efficientnet_lite0": FeatureSpace("efficientnet_lite0", "head_act", "mean",
                                       "efficientnet_lite"),
    "efficientnet_lite2": FeatureSpace("efficientnet_lite2", "head_act", "mean",
                                       "efficientnet_lite"),
    # DINOv2's final embedding: an in-model judge when DINOv2's own units are drawn.
    "dinov2": FeatureSpace("dinov2_vits14", "encoder.ln", "cls", "dinov2"),
    # The specificity figures' space (vitviz.quality.metrics), never a judge.
    "mobilenet_v2": FeatureSpace("mobilenet_v2", "features", "mean", "mobilenet_v2"),
}
# The judges, the preferred first; mobilenet_v2 is left out because the specificity figures
# use it.
JUDGES = ("efficientnet_lite0", "efficientnet_lite2", "dinov2")
DEFAULT_JUDGE = JUDGES[0]


def get_judge(name: str) -> FeatureSpace:
    if name not in JUDGES:
        raise UserError(f"judge '{name}' is unknown: use one of {', '.join(JUDGES)}")
    return FEATURE_SPACES[name]


def family_of(model_name: str) -> str:
    """The family of a registered model: a feature space's family, else the model's own name."""
    base, _ = parse_model_name(model_name)
    return next((space.family for space in FEATURE_SPACES.values() if space.model == base), base)


def is_independent(judge: str, model_name: str) -> bool:
    """Whether `judge` shares nothing with the visualised model `model_name`."""
    return get_judge(judge).family != family_of(model_name)


def independent_judge(model_name: str) -> str:
    """The first judge that shares no weights or training with `model_name`."""
    return next(name for name in JUDGES if is_independent(name, model_name))


@functools.lru_cache(maxsize=3)
def _feature_model(name: str) -> LoadedModel:
    return load_model(FEATURE_SPACES[name].model, "cpu")


@torch.no_grad()
def embed(images: torch.Tensor, space: str = DEFAULT_JUDGE, batch_size: int = 32) -> torch.Tensor:
    """Unit-length features [N, F] in `space` of [0, 1] images [N, 3, H, W] of any size."""
    spec = FEATURE_SPACES[space]
    model = _feature_model(space)
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


def picture_references(features: torch.Tensor, count: int = REFERENCES) -> torch.Tensor:
    """A unit's references [count, F] from its pictures' views [seeds, PICTURE_VIEWS, F]: every
    picture whole first, then their quarters, as far as `count` goes."""
    return features.transpose(0, 1).flatten(0, 1)[:count]


def view_embeddings(photos: Sequence, judge: str = DEFAULT_JUDGE) -> torch.Tensor:
    """Judge features of every photo view (photo and crops, in `photo_views` order)."""
    images, _ = photo_views(photos, _feature_model(judge).preprocessing.size)
    return embed(images, judge)


@functools.lru_cache(maxsize=2)
def _builtin_views(judge: str) -> torch.Tensor:
    from vitviz.data.photos import load_photos

    return view_embeddings(load_photos(), judge)


def pool_for(examples, judge: str = DEFAULT_JUDGE):
    """Where the judge draws a layer's queries and exemplars: the folder's index when the
    examples come from one (`vitviz.data.photo_sets`), else the built-in photos' views."""
    from vitviz.data.photo_sets import IndexedExamples

    if isinstance(examples, IndexedExamples):
        return IndexPool(examples, judge)
    return ViewPool(examples, _builtin_views(judge))


class ViewPool:
    """The built-in photos: every view's value for every unit, and every view's judge features.
    Keys are view indices (`photo_views` order); a view's photo is the photo it is cut from."""

    def __init__(self, stats: LayerActivations, views: torch.Tensor):
        self.stats, self.views = stats, views

    def ranked(self, unit: int, bottom: bool = False) -> list[tuple[int, int]]:
        """(key, photo) of every view, from the one that drives the unit most (least)."""
        return self.stats.ranked(unit, bottom)

    def features(self, keys: Sequence[int]) -> torch.Tensor:
        return self.views[list(keys)]

    def photo_of(self, key: int) -> int:
        return self.stats.views[key][0]


class IndexPool:
    """An activation index of a folder (`VITVIZ_PHOTOS`): each unit's strongest and weakest
    whole images, as the index keeps them (k per unit). Keys are image paths, each its own
    photo; an image is read and embedded the first time a unit needs it, so a folder of any
    size costs only the images the judge looks at."""

    def __init__(self, examples, judge: str = DEFAULT_JUDGE):
        self.examples, self.judge = examples, judge  # photo_sets.IndexedExamples
        self._features: dict = {}

    def ranked(self, unit: int, bottom: bool = False) -> list[tuple]:
        return self.examples.ranked(unit, bottom)

    def features(self, keys: Sequence) -> torch.Tensor:
        from vitviz.data.photos import centre_square, read_rgb

        missing = [key for key in dict.fromkeys(keys) if key not in self._features]
        if missing:
            size = _feature_model(self.judge).preprocessing.size
            images = torch.stack([centre_square(read_rgb(path), size) for path in missing])
            self._features.update(zip(missing, embed(images, self.judge)))
        return torch.stack([self._features[key] for key in keys])

    def photo_of(self, key):
        return key


def score(task: Tasks, pool, high_refs: torch.Tensor, low_refs: torch.Tensor) -> float:
    """Fraction of the tasks where q+ leans to E+ (against E-) more than q- does."""
    def lean(keys) -> torch.Tensor:
        queries = pool.features(keys)
        return (queries @ high_refs.T).mean(dim=1) - (queries @ low_refs.T).mean(dim=1)

    return tasks_won(lean(task.high) - lean(task.low))


def side_by_side(*kinds: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One (E+, E-) from several kinds of references shown at once, each kind weighing the
    same whatever its count (one seed's pictures give 5 views, the exemplars 9): a task's lean
    is linear in the references' mean, so each kind's mean stands for it."""
    return tuple(torch.stack([side.mean(dim=0) for side in sides]) for sides in zip(*kinds))


def tasks_won(delta: torch.Tensor) -> float:
    """The share of tasks won from each task's lean of q+ over q- (`score`); a tie is half."""
    return float(((delta > 0).float() + 0.5 * (delta == 0).float()).mean())


# "together": a unit's pictures and its natural exemplars shown at once (`side_by_side`).
KINDS = ("exemplars", "pictures", "together")


def admissible(pool, task: Tasks, key) -> bool:
    """Whether a picture made from the pool's view `key` may serve `task`: the rule of its
    natural exemplars (never a query, nor a view of an excluded photo)."""
    return key not in task.excluded_keys and pool.photo_of(key) not in task.excluded_photos


def control_references(pool, task: Tasks, pictures: Sequence[tuple], origins: Sequence[tuple],
                       start: int) -> tuple:
    """The control's (E+, E-) for `task`: the references of unit `start` (the next unit) made
    from `admissible` views only, or of the first unit after it (cyclically) that keeps one a
    side. origins: per unit, the pool's keys that its (E+, E-) rows were made from.

    Without this, a control could hold the very photos the task's queries are cut from (another
    unit's accentuated exemplars start from its own exemplars, which may be this unit's
    queries), and score above chance for that alone. A unit is passed over only when it keeps
    nothing on a side: choosing among units by how many references they keep would favour the
    units least like this one, and flatter the margin."""
    for step in range(len(pictures) - 1):
        other = (start + step) % len(pictures)
        kept = tuple(side[[row for row, key in enumerate(keys) if admissible(pool, task, key)]]
                     for side, keys in zip(pictures[other], origins[other]))
        if all(len(side) for side in kept):
            return kept
    raise UserError("every other unit's references come from the photos of a unit's queries: "
                    "use a larger photo set (VITVIZ_PHOTOS, `vitviz index` with a larger --k) "
                    "or more units")


def mis(pool, units: Sequence[int], pictures: Sequence[tuple] | None = None,
        query_set: str = "standard", count: int = TASKS,
        origins: Sequence[tuple] | None = None,
        exemplars: Callable[[object, int, Tasks], tuple[list, list]] = natural_references
        ) -> dict:
    """Judge scores over `units` of one layer for one query set (chance 0.5).

    pool: where queries and exemplars come from (ViewPool: the built-in photos; IndexPool: a
    folder's index); pictures: per unit, (E+, E-) judge features [K, F] of its maximising and
    minimising pictures' views (`picture_references`), or None for the exemplars alone;
    origins: per unit, the pool's keys each row of its pictures was made from, where they were
    made from photos (accentuated exemplars), else None; exemplars: how a unit's natural
    exemplars (E+, E-) are picked for a task (`natural_references`: the query set's rule). Each
    unit's control is the next unit's references, cyclically, with the unit's own queries
    (`control_references` where the pictures have origins). Pictures drawn from noise (no
    origins) are also scored "together" with the unit's natural exemplars: what a picture adds
    to the photos a person already sees.
    """
    units = list(units)
    if len(units) < 2:
        raise ValueError("the judge's control needs at least two units")
    if query_set not in QUERY_SETS:
        raise ValueError(f"query set '{query_set}' is unknown: use one of {QUERY_SETS}")
    if origins is not None and any(len(side) != len(keys) for sides, made_from in
                                   zip(pictures, origins) for side, keys in zip(sides, made_from)):
        raise ValueError("origins name one view per reference row")
    unit_tasks = [tasks(pool, unit, query_set, count) for unit in units]
    found: dict[str, list[float]] = {}
    for i, (unit, task) in enumerate(zip(units, unit_tasks)):
        other = (i + 1) % len(units)
        natural = tuple(tuple(pool.features(keys) for keys in exemplars(pool, of, task))
                        for of in (unit, units[other]))
        references = {"exemplars": natural}
        if pictures is not None:
            foreign = (pictures[other] if origins is None
                       else control_references(pool, task, pictures, origins, other))
            references["pictures"] = (pictures[i], foreign)
            if origins is None:
                references["together"] = tuple(
                    side_by_side(drawn, photos)
                    for drawn, photos in zip((pictures[i], pictures[other]), natural))
        for kind, (own, foreign) in references.items():
            found.setdefault(kind, []).append(score(task, pool, *own))
            found.setdefault(f"{kind}_control", []).append(score(task, pool, *foreign))
    figures: dict = {name: sum(values) / len(values) for name, values in found.items()}
    # Each unit's margin: a unit's tasks share its photos and pictures, so the margin's noise
    # is that of its units (vitviz.surveys.report gives their standard error), not of its tasks.
    figures["unit_margins"] = {kind: [a - b for a, b in zip(found[kind], found[f"{kind}_control"])]
                               for kind in KINDS if kind in found}
    figures["unit_scores"] = {kind: found[kind] for kind in KINDS if kind in found}
    for kind, margins in figures["unit_margins"].items():
        figures[f"{kind}_margin"] = sum(margins) / len(margins)
    figures["units"] = len(units)
    figures["tasks_per_unit"] = count
    figures["references"] = REFERENCES
    return figures
