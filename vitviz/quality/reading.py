"""One unit's pictures read by an independent judge, beside its natural exemplars.

The report judges many units at once, with a control (another unit's pictures) and standard
errors over units (vitviz.surveys.report). A person looking at one unit wants a plainer
question answered beside its pictures: shown what drives this unit up and what drives it down,
can a network that shares nothing with the model tell which of two photos drives it more, and
how does that compare with showing it the unit's own photos? The tasks, references, decision
and query sets are the judge's (`vitviz.quality.judge`); one unit's score over its 20 tasks
moves by about 10 points with the luck of the photos, so it is shown with that noise.
"""
from __future__ import annotations

import math

import torch

from vitviz.errors import UserError
from vitviz.models.loaded import LoadedModel
from vitviz.quality import judge
from vitviz.quality.metrics import as_tensor
from vitviz.rendering import picture_mix


def read_unit(pool, unit: int, maximising: torch.Tensor, minimising: torch.Tensor,
              judge_name: str = judge.DEFAULT_JUDGE, count: int = judge.TASKS,
              accentuated: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """The judge's scores for `unit` on each query set (chance 0.5): with its pictures as the
    references (maximising [N, 3, H, W] as E+, minimising as E-, each whole and by quarters:
    `judge.embed_pictures`), with its natural exemplars, and with both together (what a page
    shows a person: the pictures beside the photos); with `accentuated` (E+ and E- images,
    the unit's accentuated exemplars), with those too.

    pool: the layer's photos (`judge.pool_for`), whose views the queries and exemplars are.
    """
    if not len(maximising) or not len(minimising):
        raise UserError("the judge needs at least one maximising and one minimising picture")
    references = tuple(judge.picture_references(judge.embed_pictures(images, judge_name))
                       for images in (maximising, minimising))
    accented = (tuple(judge.embed(images, judge_name) for images in accentuated)
                if accentuated is not None else None)
    found: dict = {}
    for query_set in judge.QUERY_SETS:
        task = judge.tasks(pool, unit, query_set, count)
        exemplars = tuple(pool.features(keys)
                          for keys in judge.natural_references(pool, unit, task))
        together = judge.side_by_side(references, exemplars)
        found[query_set] = {"pictures": round(judge.score(task, pool, *references), 4),
                            "exemplars": round(judge.score(task, pool, *exemplars), 4),
                            "together": round(judge.score(task, pool, *together), 4)}
        if accented is not None:
            found[query_set]["accentuated"] = round(judge.score(task, pool, *accented), 4)
    return {**found, "tasks": count, "references": [len(side) for side in references],
            "noise": task_noise(count)}


def task_noise(count: int = judge.TASKS) -> float:
    """The standard error of one unit's score at chance level over `count` tasks: how far
    one unit's figure moves with the luck of its photos."""
    return math.sqrt(0.25 / count)


def _single_unit(result) -> tuple[str, int, str | int]:
    spec = result.config["objective"]
    if spec.get("type") not in ("neuron", "channel") or isinstance(spec.get("unit"), list):
        raise UserError("the judge reads the pictures of one neuron or channel: this run is "
                        f"of a {spec.get('type')} objective"
                        + (" over several units" if isinstance(spec.get("unit"), list) else ""))
    return spec["layer"], spec["unit"], spec.get("tokens", "patch")


def unit_reading(model: LoadedModel, maximising, minimising, judge_name: str | None = None,
                 photos=None) -> dict:
    """`read_unit` for the runs of one unit driven up (`maximising`) and down (`minimising`),
    every seed of each a reference, against the configured photo set (or `photos`, that set's
    statistics of the layer when the caller holds them), with what it was measured against;
    and the unit's accentuated exemplars, its photo-disjoint exemplars mixed with these
    pictures (`picture_mix.unit_exemplars`, the report's), scored the same way.

    The judge is the first that shares nothing with the model (`judge.independent_judge`)
    unless `judge_name` names one; an in-model judge is marked `in_model`, a diagnostic.
    """
    from vitviz.data.photo_sets import current_photo_set_id, examples_for

    where = _single_unit(maximising)
    same_model = minimising.config["model"] == maximising.config["model"]
    if _single_unit(minimising) != where or not same_model:
        raise UserError("the judge needs two runs of the same unit of the same model: one "
                        "driving it up, one driving it down")
    if maximising.config.get("minimise") or not minimising.config.get("minimise"):
        raise UserError("the judge needs the unit driven up (its first run) and driven down "
                        "(its second, `minimise`)")
    layer, unit, tokens = where
    judge_name = judge_name or judge.independent_judge(model.registry_name)
    space = judge.get_judge(judge_name)
    stats = photos if photos is not None else examples_for(model, layer, tokens)
    pool = judge.pool_for(stats, judge_name)
    up, down = as_tensor(maximising.images), as_tensor(minimising.images)
    accentuated = tuple(picture_mix.unit_exemplars(model, layer, unit, stats, pictures,
                                                   minimise, tokens=tokens).images
                        for minimise, pictures in ((False, up), (True, down)))
    found = read_unit(pool, unit, up, down, judge_name, accentuated=accentuated)
    return {"judge": {"name": judge_name, "model": space.model, "layer": space.label,
                      "in_model": not judge.is_independent(judge_name, model.registry_name)},
            "photo_set": stats.label, "photo_set_id": current_photo_set_id(), **found}


STORED = "judge_reading"  # where a maximising run keeps its reading, in `Result.metrics`


def stored_reading(result, judge_name: str, photo_set_id: str) -> dict | None:
    """The reading stored with a maximising run (`Result.metrics[STORED]`) for this judge and
    photo set, or None."""
    reading = result.metrics.get(STORED)
    if (reading and reading["judge"]["name"] == judge_name
            and reading["photo_set_id"] == photo_set_id):
        return reading
    return None


def summary_lines(reading: dict) -> list[str]:
    """A reading in words, one line per query set."""
    judged = reading["judge"]["model"] + (" (in-model diagnostic)" if reading["judge"]["in_model"]
                                          else "")
    lines = [f"judge: {judged}, {reading['tasks']} tasks a query set, chance 50%, "
             f"one unit's noise ±{100 * reading['noise']:.0f} points"]
    for query_set in judge.QUERY_SETS:
        scores = reading[query_set]
        # Readings stored before 2026-12-07 have no "together"; before 2026-12-08, no
        # "accentuated".
        both = (f", both together {100 * scores['together']:.0f}%" if "together" in scores
                else "")
        mixed = (f", accentuated exemplars {100 * scores['accentuated']:.0f}%"
                 if "accentuated" in scores else "")
        lines.append(f"{query_set.replace('_', '-')}: pictures {100 * scores['pictures']:.0f}%, "
                     f"natural exemplars {100 * scores['exemplars']:.0f}%{both}{mixed}")
    return lines


def keep_reading(model: LoadedModel, maximising, minimising, judge_name: str | None = None,
                 photos=None) -> tuple[dict, bool]:
    """The reading of `maximising` and `minimising` (`unit_reading`), the one stored with the
    maximising run for this judge and photo set if there is one, else made and stored there;
    and whether it was made, so that the caller writes the run back to its cache."""
    from vitviz.data.photo_sets import current_photo_set_id

    judge_name = judge_name or judge.independent_judge(model.registry_name)
    found = stored_reading(maximising, judge_name, current_photo_set_id())
    if found is not None:
        return found, False
    found = unit_reading(model, maximising, minimising, judge_name, photos)
    maximising.metrics[STORED] = found
    return found, True
