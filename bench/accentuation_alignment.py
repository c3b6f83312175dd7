"""Where accentuation moves the judge's view of a unit, and whether that is the unit's way.

    python bench/accentuation_alignment.py --blocks 2 --units random:16 --cache CACHE

The references are the report's accentuated exemplars (`report.accentuated_references`): each
unit's 9 strongest and 9 weakest photo-disjoint views, each accentuated. The judge's score
reads one direction per unit, w = mean(E+) - mean(E-) in its feature space: a task is won when
q+ - q- leans along w. Per layer this prints how far accentuation turns w (|dw| / |w|), how
well w and dw point along the unit's own queries (the cosine with their mean q+ - q-), and the
score over the photo-disjoint tasks of the start photos, of the accentuated exemplars, and of
their change remade: larger, smoothed, its fine part alone, or less the part that every unit's
change shares. Missing exemplars are computed into --cache (`bench/quality_sweep.py
--accentuated` makes the same ones). The start photos here are each run's step-0 picture, not
the judge's own crop of the photo, so their score may differ from the report's by a point or
two.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from vitviz.data.photo_sets import examples_for
from vitviz.data.references import exemplar_ranks
from vitviz.quality import judge
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache
from vitviz.surveys import report

import judged_units  # bench/, beside this script

# How each variant remakes a picture's change (picture - photo, [3, H, W] in [0, 1] at the
# picture's size) before it is added back to the photo.
CHANGES = {
    "accentuated exemplars": lambda d: d,
    "change x2": lambda d: 2 * d,
    "change x4": lambda d: 4 * d,
    "change smoothed (Gaussian, sigma 4 px)": lambda d: gaussian_blur(d, [25, 25], [4.0, 4.0]),
    "change's fine part (less its sigma-2 blur)":
        lambda d: d - gaussian_blur(d, [13, 13], [2.0, 2.0]),
}
LESS_COMMON = "accentuated, less the change common to the layer's units"


def as_tensor(images: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2) / 255


def score(direction: torch.Tensor, leans: torch.Tensor) -> float:
    """The judge's score (`judge.score`) of references whose mean difference is `direction`,
    from the tasks' rows of q+ - q-: its lean is linear in the references' means."""
    return judge.tasks_won(leans @ direction)


def unit_views(model, layer: str, unit: int, pool, knobs: dict, cache: ResultCache,
               judge_name: str) -> dict:
    """Judge features [2, 9, F] (maximising, minimising) of the start photos and of each variant."""
    found: dict[str, list] = {}
    for minimise, ranks in zip((False, True), exemplar_ranks(pool, unit, judge.REFERENCES)):
        runs = report.accentuated_batch(model, layer, unit, ranks, minimise, DEFAULT_PRESET,
                                        knobs, cache)
        photos = as_tensor([run.checkpoints[0][0] for run in runs])
        change = as_tensor([run.images[0] for run in runs]) - photos
        found.setdefault("start photos", []).append(judge.embed(photos, judge_name))
        for name, remake in CHANGES.items():
            found.setdefault(name, []).append(
                judge.embed((photos + remake(change)).clamp(0, 1), judge_name))
    return {name: torch.stack(sides) for name, sides in found.items()}


def layer_figures(views: list[dict], leans: list[torch.Tensor]) -> dict:
    """Per variant: score, paired difference from the start photos (mean, s.e.), cos(dw, q)."""
    direction = judged_units.direction
    # The shared change: per side, the mean change over all of this layer's units' pictures.
    shared = torch.stack([v["accentuated exemplars"] - v["start photos"]
                          for v in views]).mean(dim=(0, 2))
    rows: dict[str, dict] = {}
    starts = [direction(v["start photos"]) for v in views]
    for name in ["start photos", *CHANGES, LESS_COMMON]:
        turned = [direction(v["accentuated exemplars"]) - (shared[0] - shared[1])
                  if name == LESS_COMMON else direction(v[name]) for v in views]
        scores = [score(w, q) for w, q in zip(turned, leans)]
        paired = [s - score(w0, q) for s, w0, q in zip(scores, starts, leans)]
        rows[name] = {
            "score": statistics.mean(scores),
            "above_starts": statistics.mean(paired),
            "above_starts_se": statistics.stdev(paired) / len(paired) ** 0.5,
            "cos_turn_queries": statistics.mean(
                float(F.cosine_similarity(w - w0, q.mean(0), dim=0))
                for w, w0, q in zip(turned, starts, leans)) if name != "start photos" else None,
        }
    accentuated = [direction(v["accentuated exemplars"]) for v in views]
    return {
        "units": len(views),
        "turn": statistics.mean(float((w - w0).norm() / w0.norm())
                                for w, w0 in zip(accentuated, starts)),
        "cos_start_queries": statistics.mean(float(F.cosine_similarity(w0, q.mean(0), dim=0))
                                             for w0, q in zip(starts, leans)),
        "shared_share": [float(shared[side].norm() ** 2 / torch.stack(
            [(v["accentuated exemplars"] - v["start photos"])[side].mean(0) for v in views]
        ).norm(dim=1).square().mean()) for side in (0, 1)],
        "variants": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    judged_units.add_arguments(parser)
    parser.add_argument("--knobs", type=json.loads, default={}, metavar="JSON",
                        help="knobs the accentuated exemplars change in the default preset")
    args = parser.parse_args()
    model, judge_name, chosen, cache = judged_units.open_units(args)
    knobs = {**args.knobs, "steps": args.steps}
    figures = {}
    for layer, units in chosen.items():
        pool = judge.pool_for(examples_for(model, layer), judge_name)
        views = [unit_views(model, layer, unit, pool, knobs, cache, judge_name) for unit in units]
        leans = []
        for unit in units:
            task = judge.tasks(pool, unit, "photo_disjoint")
            leans.append(pool.features(task.high) - pool.features(task.low))
        found = figures[layer] = layer_figures(views, leans)
        print(f"{layer}: {found['units']} units, judge {judge_name}; accentuation turns w by "
              f"{found['turn']:.2f} of its length; cos(w, queries) {found['cos_start_queries']:+.3f}; "
              f"change shared by all units: {found['shared_share'][0]:.0%} (up), "
              f"{found['shared_share'][1]:.0%} (down)")
        for name, row in found["variants"].items():
            turn = ("" if row["cos_turn_queries"] is None
                    else f"  cos(dw, queries) {row['cos_turn_queries']:+.3f}")
            print(f"  {name:58s} {row['score']:6.1%}  above the photos {row['above_starts']:+.1%} "
                  f"± {row['above_starts_se']:.1%}{turn}")
    judged_units.write_out(args, model, judge_name, knobs=knobs, layers=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
