"""Would more pictures per unit tell the judge more? References from 1, 2 or all seeds, paired.

    python bench/picture_references.py --blocks 2 --seeds 4 --cache CACHE

The report judges a unit's pictures by 9 references a side made from its seeds' pictures:
each picture whole, then their quarters (`judge.picture_references`), so 2 seeds give 2 wholes
and 7 quarters, where separate pictures might show more of what drives it. This runs the default
preset once with --seeds pictures of every unit (both directions, into --cache) and judges the
same pictures with references made in several ways, each unit's margin paired against
the report's 2-seed references. The control is the next unit's references made the same way.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

from vitviz.models.registry import load_model
from vitviz.quality import judge
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache
from vitviz.surveys import report

BASELINE = "2 pictures: 2 wholes, 7 quarters (the report's)"


def reference_sets(views: torch.Tensor) -> dict[str, torch.Tensor]:
    """A unit's candidate references from its pictures' judge features [seeds, PICTURE_VIEWS,
    F] (whole first, then quarters), each [K, F]."""
    seeds = len(views)
    return {
        "1 picture: whole, 4 quarters": views[0],
        BASELINE: judge.picture_references(views[:2]),
        "2 other pictures: 2 wholes, 7 quarters": judge.picture_references(views[2:4]),
        "2 pictures, wholes only": views[:2, 0],
        f"{seeds} pictures, wholes only": views[:, 0],
        f"{seeds} pictures: {min(seeds, judge.REFERENCES)} wholes first, "
        f"{judge.REFERENCES} in all":
            judge.picture_references(views),
        f"{seeds} pictures, every view ({seeds * judge.PICTURE_VIEWS})": views.flatten(0, 1),
    }


def paired(found: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per reference set: mean score and margin over units, and the margin's mean difference
    from BASELINE's with its standard error."""
    def se(values: list[float]) -> float:
        return statistics.stdev(values) / math.sqrt(len(values))

    base = found[BASELINE]["margins"]
    figures = {}
    for name, values in found.items():
        differences = [a - b for a, b in zip(values["margins"], base)]
        figures[name] = {"score": statistics.mean(values["scores"]),
                         "margin": statistics.mean(values["margins"]),
                         "margin_se": se(values["margins"]),
                         "paired": statistics.mean(differences), "paired_se": se(differences)}
    return figures


def judge_reference_sets(model, layer_units: dict[str, list[int]], seeds: int, cache,
                         judge_name: str, steps: int | None = None) -> dict:
    """query set -> `paired` figures over every unit of `layer_units`."""
    overrides = {"steps": steps} if steps else {}
    found = report.compare(model, layer_units, {DEFAULT_PRESET: (DEFAULT_PRESET, overrides)},
                           list(range(seeds)), cache, judge_name)
    gathered: dict[str, dict] = {query_set: {} for query_set in judge.QUERY_SETS}
    for layer, info in found.layers.items():
        units = info["units"]
        high = report.picture_views(found.pictures[DEFAULT_PRESET][layer], judge_name)
        low = report.picture_views(found.minimised[DEFAULT_PRESET][layer], judge_name)
        per_unit = [(reference_sets(high[i]), reference_sets(low[i])) for i in range(len(units))]
        for name in per_unit[0][0]:
            references = [(up[name], down[name]) for up, down in per_unit]
            for query_set, by_name in gathered.items():
                figures = judge.mis(info["pool"], units, references, query_set)
                values = by_name.setdefault(name, {"scores": [], "margins": []})
                values["scores"] += figures["unit_scores"]["pictures"]
                values["margins"] += figures["unit_margins"]["pictures"]
    return {query_set: paired(by_name) for query_set, by_name in gathered.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2])
    parser.add_argument("--units", default="random:16", help="per block, as in the report")
    parser.add_argument("--seeds", type=int, default=4, help="at least 4")
    parser.add_argument("--steps", type=int, help="default: the preset's own")
    parser.add_argument("--judge", choices=judge.JUDGES,
                        help="default: the first judge independent of --model")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    if args.seeds < 4:
        parser.error("--seeds must be at least 4: two pictures against two others")

    model = load_model(args.model, "cpu")
    layers = [f"encoder.layers.encoder_layer_{block}.mlp.1" for block in args.blocks]
    judge_name = args.judge or judge.independent_judge(model.registry_name)
    cache = ResultCache(args.cache) if args.cache else ResultCache()
    found = judge_reference_sets(model, report.layer_units(model, layers, args.units, 0),
                                 args.seeds, cache, judge_name, args.steps)
    for query_set, rows in found.items():
        print(f"{judge_name}, {query_set} queries:")
        for name, row in rows.items():
            print(f"  {name:48s} score {row['score']:.1%}  margin {100 * row['margin']:+.1f} "
                  f"± {100 * row['margin_se']:.1f}  paired {100 * row['paired']:+.1f} "
                  f"± {100 * row['paired_se']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
