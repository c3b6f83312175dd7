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

With --blend ALPHA..., the same two kinds put into one image: each exemplar mixed in pixels
with the unit's pictures (1 - ALPHA of the photo, ALPHA of a picture; the maximising ones on the
E+ side), against the same mix with another unit's pictures, both paired with the exemplars
unmixed at the pictures' size. What a change to a photo must carry for the judge to read more
in it than in the photo: the question accentuated exemplars answer.

With --accentuated, the report's accentuated exemplars (`report.mixed_references`: each
exemplar mixed with the unit's pictures as little as it takes to drive the unit as hard as its
strongest photo view), scored as the report scores them, in both query sets, each unit paired
against the photos they start from; with their margins over another unit's, and the shares
they took. With --grid PNG as well, the first units of each layer drawn: the unit's picture,
then its first photo-disjoint exemplars (driven up), each unchanged and mixed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vitviz.data.examples import photo_views
from vitviz.data.photo_sets import examples_for
from vitviz.data.photos import load_photos
from vitviz.data.references import disjoint_exemplars
from vitviz.quality import judge, metrics
from vitviz.rendering import picture_mix
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.results import to_uint8
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


UNMIXED = "exemplars unmixed, at the pictures' size"


def blend_rows(pool, units: list[int], photo_pixels, pictures: list[tuple], alphas, embed,
               count: int = judge.TASKS) -> dict[str, list[float]]:
    """Per mix, each unit's score over its `count` photo-disjoint tasks: its 9 exemplars a side
    mixed with its own pictures, or with the next unit's. photo_pixels(keys): the pool's views
    as images; pictures: per unit, its (maximising, minimising) images [P, 3, S, S]; embed:
    images to unit-length judge features."""
    rows: dict[str, list[float]] = {}
    for i, unit in enumerate(units):
        task = judge.tasks(pool, unit, "photo_disjoint", count)
        leans = pool.features(task.high) - pool.features(task.low)
        starts = [photo_pixels(keys) for keys in judge.natural_references(pool, unit, task)]
        mixes = [(UNMIXED, 0.0, pictures[i])] + [
            (f"exemplars mixed {alpha:g} with {whose} pictures", alpha, sides)
            for alpha in alphas
            for whose, sides in (("this unit's", pictures[i]),
                                 ("another unit's", pictures[(i + 1) % len(units)]))]
        for name, alpha, own in mixes:
            sides = tuple(embed(picture_mix.mixed(start, made, alpha))
                          for start, made in zip(starts, own))
            rows.setdefault(name, []).append(
                judge.tasks_won(leans @ judged_units.direction(sides)))
    return rows


def accentuated_rows(pool, units: list[int], references: list[tuple]) -> dict[str, list[float]]:
    """Per query set, each unit's score and margin with its accentuated exemplars
    (`references`, made from its `disjoint_exemplars`) and with the photos they start from,
    as `report.accentuated_verdicts` scores them."""
    origins = [disjoint_exemplars(pool, unit, judge.REFERENCES) for unit in units]
    starts = [tuple(pool.features(keys) for keys in sides) for sides in origins]
    rows: dict[str, list[float]] = {}
    for query_set in judge.QUERY_SETS:
        for name, made in (("accentuated", references), ("start photos", starts)):
            found = judge.mis(pool, units, made, query_set, origins=origins)
            rows[f"{query_set}: {name}"] = found["unit_scores"]["pictures"]
            rows[f"{query_set}: {name}, margin"] = found["unit_margins"]["pictures"]
    return rows


GRID_UNITS, GRID_EXEMPLARS = 3, 3  # per layer, and per unit


def grid_row(picture: np.ndarray, label: str, made) -> list[tuple[np.ndarray, str]]:
    """A unit's tiles: its picture [H, W, 3], then each exemplar of `made`
    (`picture_mix.Mixed`) unchanged and mixed, with the unit's drive on each."""
    tiles = [(picture, label)]
    for i in range(min(GRID_EXEMPLARS, len(made.shares))):
        # ASCII only: the grid's captions use PIL's built-in bitmap font.
        tiles += [(to_uint8(made.photos[i][None])[0], f"photo: {made.photo_drive[i]:.2g}"),
                  (to_uint8(made.images[i][None])[0],
                   f"{made.shares[i]:.0%} mixed: {made.drive[i]:.2g}" if made.shares[i]
                   else "unchanged")]
    return tiles


def draw_grid(rows: list[list[tuple[np.ndarray, str]]],
              tile: int = report.GRID_TILE) -> Image.Image:
    """Rows of captioned tiles, a caption line above each tile."""
    line = 14
    sheet = Image.new("RGB", (max(map(len, rows)) * tile, len(rows) * (tile + line)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, tiles in enumerate(rows):
        for c, (image, caption) in enumerate(tiles):
            top = r * (tile + line)
            sheet.paste(Image.fromarray(image).resize((tile, tile), Image.LANCZOS),
                        (c * tile, top + line))
            draw.text((c * tile + 2, top + 1), caption, fill="black")
    return sheet


def print_paired(rows: dict[str, list[float]], base: list[float], against: str) -> None:
    for name, values in rows.items():
        mean, _ = report.mean_and_se(values)
        if name.startswith("cos"):
            print(f"  {name:50s} {mean:+.3f}")
            continue
        gain, se = report.mean_and_se([a - b for a, b in zip(values, base)])
        print(f"  {name:50s} {mean:6.1%}  paired with {against} {gain:+.1%} ± {se:.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    judged_units.add_arguments(parser)
    parser.add_argument("--accentuated", action="store_true",
                        help="also score the report's accentuated exemplars (mixed with the "
                             "pictures) against the photos they start from")
    parser.add_argument("--grid", type=Path, metavar="IMAGE",
                        help="with --accentuated, draw the first units' exemplars, unchanged "
                             "and mixed (PNG or JPEG)")
    parser.add_argument("--blend", type=float, nargs="+", default=[], metavar="ALPHA",
                        help="also mix each exemplar with the pictures in pixels, at these "
                             "shares of the picture (0 to 1)")
    args = parser.parse_args()
    if any(not 0 < alpha <= 1 for alpha in args.blend):
        parser.error("--blend takes shares of the picture above 0, up to 1")
    if args.grid and not args.accentuated:
        parser.error("--grid draws the accentuated exemplars: add --accentuated")
    model, judge_name, chosen, cache = judged_units.open_units(args)
    knobs = {"steps": args.steps}
    found: dict[str, dict] = {}
    views = None  # the built-in photos' views at the pictures' size, read once for every layer
    grid: list = []
    for layer, units in chosen.items():
        examples = examples_for(model, layer)
        pool = judge.pool_for(examples, judge_name)
        if args.blend and not isinstance(pool, judge.ViewPool):
            parser.error("--blend mixes the built-in photos' views: unset VITVIZ_PHOTOS")
        up, _ = report.run_preset(model, layer, units, SEEDS, DEFAULT_PRESET, knobs, cache)
        down, _ = report.run_preset(model, layer, units, SEEDS, DEFAULT_PRESET, knobs, cache,
                                    minimise=True)
        rows = found[layer] = unit_rows(pool, units,
                                        report.picture_references(up, down, judge_name))
        print(f"{layer}, {len(units)} units, judge {judge_name}, photo-disjoint tasks")
        print_paired(rows, rows["natural exemplars (9 a side)"], "the exemplars")
        if args.blend:
            if views is None or views.shape[-1] != up.shape[2]:
                views, _ = photo_views(load_photos(), up.shape[2])
            mixed = blend_rows(pool, units, lambda keys: views[list(keys)],
                               [(metrics.as_tensor(a), metrics.as_tensor(b))
                                for a, b in zip(up, down)],
                               args.blend, lambda images: judge.embed(images, judge_name))
            print_paired(mixed, mixed[UNMIXED], "the exemplars unmixed")
            rows.update(mixed)
        if args.accentuated:
            made, shares = report.mixed_references(
                model, layer, {"units": units, "pool": pool, "examples": examples}, judge_name,
                (up, down))
            accented = accentuated_rows(pool, units, made)
            block = layer.split("_")[-1].split(".")[0]
            grid += [grid_row(up[i][0], f"block {block}, #{unit}", picture_mix.unit_exemplars(
                         model, layer, unit, examples, metrics.as_tensor(list(up[i])),
                         count=GRID_EXEMPLARS))
                     for i, unit in enumerate(units[:GRID_UNITS])] if args.grid else []
            for query_set in judge.QUERY_SETS:
                print(f"  accentuated exemplars, {query_set} queries:")
                print_paired({kind: accented[f"{query_set}: {kind}"]
                              for kind in ("accentuated", "start photos")},
                             accented[f"{query_set}: start photos"], "their start photos")
                print_paired({kind: accented[f"{query_set}: {kind}, margin"]
                              for kind in ("accentuated", "start photos")},
                             accented[f"{query_set}: start photos, margin"],
                             "their start photos' margin")
            print(f"  shares taken: {report.share_summary(shares)}")
            rows.update(accented)
            rows["shares"] = shares
    if grid:
        draw_grid(grid).save(args.grid, quality=88)
    judged_units.write_out(args, model, judge_name, units=chosen, layers=found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
