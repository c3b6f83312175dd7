"""How much the judge's standard query set lets an exemplar share a photo with a query, and
what that is worth to the natural exemplars' score.

    python bench/query_overlap.py       # dinov2_vits14, 16 units of mlp.1 in blocks 2, 5, 8, 11
    python bench/query_overlap.py --judge efficientnet_lite0    # and the exemplars' scores

For each unit (the report's `random:N` draw) over the built-in photos: from how many photos its
strongest query views come, and what share of its standard natural exemplars are cut from a
photo that one of its queries on the same side comes from. A crop of the query's own photo is
an easy reference no picture can be; the photo-disjoint set allows none. With --judge, the
natural exemplars' score and margin under three rules: standard; standard, except that no
exemplar comes from a photo of a query on its own side (`side_disjoint_references`); and
photo-disjoint (no exemplar from any query's photo).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys

from vitviz.data import photo_sets
from vitviz.models.registry import load_model
from vitviz.quality import judge
from vitviz.surveys.report import layer_units

SIDE_DISJOINT = "standard, no exemplar from its own side's query photos"
RULES = ("standard", SIDE_DISJOINT, "photo_disjoint")


def overlap(model, layers: list[str], units: str, query_set: str = "standard") -> dict:
    """Over `units` (the report's spec) of each layer: the number of photos behind each unit's
    strongest query views, and the share of its maximising and minimising exemplars in
    `query_set` cut from a photo of one of its queries on the same side."""
    photos, shared = [], {"maximising": [], "minimising": []}
    for layer, chosen in layer_units(model, layers, units, 0).items():
        # Only the views' ranking and photos are read: no judge features are needed.
        pool = judge.ViewPool(photo_sets.examples_for(model, layer), None)
        for unit in chosen:
            task = judge.tasks(pool, unit, query_set)
            references = judge.natural_references(pool, unit, task)
            for side, queries, picked in (("maximising", task.high, references[0]),
                                          ("minimising", task.low, references[1])):
                from_queries = {pool.photo_of(key) for key in queries}
                shared[side].append(
                    sum(pool.photo_of(key) in from_queries for key in picked) / len(picked))
            photos.append(len({pool.photo_of(key) for key in task.high}))
    return {"units": len(photos), "photos": photos,
            "shared": {side: statistics.mean(values) for side, values in shared.items()}}


def side_disjoint_references(pool, unit: int, task: judge.Tasks) -> tuple[list, list]:
    """A standard task's natural exemplars (E+, E-), except that neither side's come from a
    photo of one of its own side's queries (the other side's query photos stay allowed)."""
    def photos(keys) -> frozenset:
        return frozenset(pool.photo_of(key) for key in keys)

    high, _ = judge.natural_references(
        pool, unit, dataclasses.replace(task, excluded_photos=photos(task.high)))
    _, low = judge.natural_references(
        pool, unit, dataclasses.replace(task, excluded_photos=photos(task.low)))
    return high, low


def exemplar_scores(model, layers: list[str], units: str, judge_name: str) -> dict:
    """The natural exemplars' mean score, margin and the margin's standard error over `units`
    of each layer, per rule of `RULES` (`judge.mis` with that rule's exemplars)."""
    found: dict[str, list[tuple[float, float]]] = {rule: [] for rule in RULES}
    for layer, chosen in layer_units(model, layers, units, 0).items():
        pool = judge.pool_for(photo_sets.examples_for(model, layer), judge_name)
        for rule in RULES:
            figures = judge.mis(pool, chosen, query_set="photo_disjoint"
                                if rule == "photo_disjoint" else "standard",
                                exemplars=side_disjoint_references if rule == SIDE_DISJOINT
                                else judge.natural_references)
            found[rule] += zip(figures["unit_scores"]["exemplars"],
                               figures["unit_margins"]["exemplars"])
    return {rule: {"score": statistics.mean(s for s, _ in rows),
                   "margin": statistics.mean(m for _, m in rows),
                   "margin_se": statistics.stdev(m for _, m in rows) / math.sqrt(len(rows))}
            for rule, rows in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 5, 8, 11])
    parser.add_argument("--units", default="random:16", help="per block, as in the report")
    parser.add_argument("--judge", choices=judge.JUDGES,
                        help="also score the natural exemplars under each rule")
    args = parser.parse_args()

    model = load_model(args.model, "cpu")
    layers = [f"encoder.layers.encoder_layer_{block}.mlp.1" for block in args.blocks]
    found = overlap(model, layers, args.units)
    photos = found["photos"]
    print(f"{found['units']} units; {photo_sets.current_photo_set_id()}")
    print(f"photos behind the {judge.TASKS} strongest views: median "
          f"{statistics.median(photos):g} ({min(photos)} to {max(photos)})")
    print("standard exemplars cut from a photo of a query on the same side: maximising "
          f"{found['shared']['maximising']:.0%}, minimising {found['shared']['minimising']:.0%}")
    if args.judge:
        print(f"natural exemplars judged by {args.judge}:")
        for rule, figures in exemplar_scores(model, layers, args.units, args.judge).items():
            print(f"  {rule}: score {figures['score']:.1%}, margin "
                  f"{100 * figures['margin']:+.1f} ± {100 * figures['margin_se']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
