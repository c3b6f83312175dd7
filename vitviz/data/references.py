"""Which of a unit's photo views are its queries and which its natural exemplars: the judge's
rule (vitviz.quality.judge), kept here because pictures read it too, without any judge.

Per unit, the `TASKS` most extreme views on each side are the queries; the natural exemplars
are the next `REFERENCES` strongest and weakest views that are not queries, and in the
photo-disjoint query set not cut from a query's photo either. A picture that borrows from the
unit's photos (the exemplar-statistics prior, vitviz.rendering.exemplar_stats) borrows from
its photo-disjoint exemplars, so that no picture carries a photo its judge queries.

A source of views is anything with `ranked(unit, bottom)`, (key, photo) of every view in the
unit's drive order: a layer's dataset examples (`photo_sets.examples_for`) or a judge's pool.
"""
from __future__ import annotations

from dataclasses import dataclass

from vitviz.errors import UserError

TASKS = 20
REFERENCES = 9


class TooFewViews(UserError):
    pass


@dataclass(frozen=True)
class Tasks:
    """A unit's queries, paired by position (high[i] against low[i]), and what the natural
    exemplars of a query set must not be."""

    high: list  # q+, as the pool's keys, strongest first
    low: list  # q-, weakest first
    excluded_keys: frozenset
    excluded_photos: frozenset  # empty for the standard set


def tasks(pool, unit: int, query_set: str, count: int = TASKS) -> Tasks:
    """The unit's `count` tasks: its most extreme views on each side, paired by rank."""
    high_ranked = pool.ranked(unit)
    high = [key for key, _ in high_ranked[:count]]
    taken = set(high)
    low = [key for key, _ in pool.ranked(unit, bottom=True) if key not in taken][:count]
    if len(low) < count:
        raise TooFewViews(f"the judge needs at least {2 * count + 2 * REFERENCES} photo views "
                          f"per unit for {count} tasks, and finds {len(high_ranked)}")
    photo_of = dict(high_ranked)
    excluded_photos = (frozenset(photo_of[key] for key in high + low)
                       if query_set == "photo_disjoint" else frozenset())
    return Tasks(high, low, frozenset(high + low), excluded_photos)


def natural_references(pool, unit: int, task: Tasks,
                       count: int = REFERENCES) -> tuple[list, list]:
    """The unit's natural exemplars (E+, E-) for `task`'s query set: its strongest and weakest
    views after the queries (never a query, nor a view of an excluded photo)."""
    def pick(bottom: bool, taken: set) -> list:
        chosen = [key for key, photo in pool.ranked(unit, bottom)
                  if key not in taken and photo not in task.excluded_photos][:count]
        if len(chosen) < count:
            raise TooFewViews(f"too few photos for the judge's {count} exemplars per side once "
                              f"the queries' photos are set aside: use a larger photo set "
                              f"(VITVIZ_PHOTOS, `vitviz index` with a larger --k)")
        return chosen

    high = pick(False, set(task.excluded_keys))
    low = pick(True, set(task.excluded_keys) | set(high))
    return high, low


def disjoint_exemplars(pool, unit: int, count: int = REFERENCES) -> tuple[list, list]:
    """The pool's keys of the unit's first `count` photo-disjoint natural exemplars on each
    side (strongest, weakest): never a query, nor a view of a query's photo, in either query
    set. What pictures borrow from: the accentuated exemplars' starts, the exemplar-statistics
    prior's views."""
    return natural_references(pool, unit, tasks(pool, unit, "photo_disjoint"), count)


def exemplar_ranks(pool, unit: int, count: int = REFERENCES) -> tuple[list[int], list[int]]:
    """The ranks (in the unit's drive order, strongest and weakest first) of
    `disjoint_exemplars`."""
    high, low = disjoint_exemplars(pool, unit, count)
    rank_high = {key: rank for rank, (key, _) in enumerate(pool.ranked(unit))}
    rank_low = {key: rank for rank, (key, _) in enumerate(pool.ranked(unit, bottom=True))}
    return [rank_high[key] for key in high], [rank_low[key] for key in low]
