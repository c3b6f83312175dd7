"""How much the judge's standard query set lets an exemplar share a photo with a query.

    python bench/query_overlap.py       # dinov2_vits14, 16 units of mlp.1 in blocks 2, 5, 8, 11

For each unit (the report's `random:N` draw) over the built-in photos: from how many photos its
strongest query views come, and what share of its standard natural exemplars are cut from a
photo that one of its queries on the same side comes from. A crop of the query's own photo is
an easy reference no picture can be; the photo-disjoint set allows none.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from vitviz.data import photo_sets
from vitviz.models.registry import load_model
from vitviz.quality import judge
from vitviz.surveys.report import layer_units


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 5, 8, 11])
    parser.add_argument("--units", default="random:16", help="per block, as in the report")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
