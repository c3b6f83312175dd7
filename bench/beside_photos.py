"""What a unit's pictures add to its photos, in an independent judge's eyes, and why.

    python bench/beside_photos.py --blocks 2 --cache CACHE [--unit-seed 0] [--judge J]

The report scores the default's pictures with the unit's natural exemplars beside them
("together", `judge.side_by_side`). This reads the pictures from --cache (drawn there by
`bench/quality_sweep.py` or the report, both ways, 2 seeds; missing ones are drawn) and
scores, over the photo-disjoint tasks, each unit's references paired against its 9
exemplars a side:

- twice as many exemplars (the next 9 a side as well): is "together" just more references?
- another unit's pictures beside the exemplars: do any pictures help, or this unit's only?
- and the cosine between the two kinds' directions w = mean(E+) - mean(E-) in the judge's
  space, which the task's lean reads: near 0, the two tell the judge different things.
"""
from __future__ import annotations

import argparse
import sys

import torch.nn.functional as F

from vitviz.data.photo_sets import examples_for
from vitviz.quality import judge
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.surveys import report

import judged_units  # bench/, beside this script

SEEDS = [0, 1]


def unit_rows(pool, units: list[int], pictures: list[tuple],
              count: int = judge.TASKS) -> dict[str, list[float]]:
    """Per kind of references, each unit's score over its `count` photo-disjoint tasks; and
    the cosine per unit. pictures: per unit, its (E+, E-) judge features."""
    rows: dict[str, list[float]] = {}
    for i, unit in enumerate(units):
        task = judge.tasks(pool, unit, "photo_disjoint", count)
        leans = pool.features(task.high) - pool.features(task.low)
        natural = tuple(pool.features(keys) for keys in judge.natural_references(pool, unit, task))
        doubled = tuple(pool.features(keys) for keys in
                        judge.natural_references(pool, unit, task, 2 * judge.REFERENCES))
        other = pictures[(i + 1) % len(units)]
        kinds = {
            "natural exemplars (9 a side)": natural,
            f"natural exemplars ({2 * judge.REFERENCES} a side)": doubled,
            "pictures": pictures[i],
            "pictures with the exemplars (together)": judge.side_by_side(pictures[i], natural),
            "another unit's pictures with the exemplars": judge.side_by_side(other, natural),
        }
        for name, sides in kinds.items():
            won = judge.tasks_won(leans @ judged_units.direction(sides))
            rows.setdefault(name, []).append(won)
        rows.setdefault("cos(w pictures, w exemplars)", []).append(
            float(F.cosine_similarity(judged_units.direction(pictures[i]),
                                judged_units.direction(natural), dim=0)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    judged_units.add_arguments(parser)
    args = parser.parse_args()
    model, judge_name, chosen, cache = judged_units.open_units(args)
    knobs = {"steps": args.steps}
    found: dict[str, dict] = {}
    for layer, units in chosen.items():
        up, _ = report.run_preset(model, layer, units, SEEDS, DEFAULT_PRESET, knobs, cache)
        down, _ = report.run_preset(model, layer, units, SEEDS, DEFAULT_PRESET, knobs, cache,
                                    minimise=True)
        pool = judge.pool_for(examples_for(model, layer), judge_name)
        rows = found[layer] = unit_rows(pool, units,
                                        report.picture_references(up, down, judge_name))
        print(f"{layer}, {len(units)} units, judge {judge_name}, photo-disjoint tasks")
        base = rows["natural exemplars (9 a side)"]
        for name, values in rows.items():
            mean, _ = report.mean_and_se(values)
            if name.startswith("cos"):
                print(f"  {name:48s} {mean:+.3f}")
                continue
            gain, se = report.mean_and_se([a - b for a, b in zip(values, base)])
            print(f"  {name:48s} {mean:6.1%}  paired with the exemplars {gain:+.1%} ± {se:.1%}")
    judged_units.write_out(args, model, judge_name, units=chosen, layers=found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
