"""The sweep behind the default preset: variants of its knobs, measured with the report's figures.

    python bench/quality_sweep.py                          # every variant, dinov2_vits14
    python bench/quality_sweep.py --variants robust "copies 2" --steps 64 --out sweep.json

Each variant is the default preset with one knob changed (plus today's and yesterday's
defaults), run on the same units and seeds at the same steps, so a row differs from the
default's in that knob alone. Figures (vitviz.surveys.report): alive, robust activation / photo max,
robust rank, specificity and identification in MobileNetV2's space, the judge's score with
its control and the exemplars', for both query sets, by a judge independent of the model. The
quality doc's sweep tables are this script's output.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vitviz.models.registry import load_model
from vitviz.quality.judge import JUDGES, independent_judge
from vitviz.rendering.presets import DEFAULT_PRESET, get_preset
from vitviz.store.cache import ResultCache
from vitviz.surveys.report import (
    UNITS_PER_RUN,
    check_settings,
    compare,
    comparison_grid,
    judge_summary,
    layer_units,
    print_table,
)

_DEFAULT = get_preset(DEFAULT_PRESET)
_CROP = dict(_DEFAULT.transforms)["crop"]
_MACO = {k: v for k, v in get_preset("maco").knobs().items() if k not in ("name", "steps")}
# MACO's image (natural Fourier magnitude, only the phase optimised) and optimiser, the
# default's canvas, crops, rotation, noise and leaky target.
_PHASE = {"param": "maco", "param_kwargs": {}, "optimiser": "nadam", "lr": 1.0}
# The priors below were measured on the default before it held pictures to their unit's photos
# (vitviz.rendering.exemplar_stats, yielding): each keeps that base, so that a rerun gives the
# figures docs/quality.md shows for it.
_NO_PHOTO_PRIOR = {"exemplar_stats": 0.0, "priors_yield": False}


def _crop(drop: tuple[str, ...] = (), **changes) -> list:
    """The default's transforms with its crop changed (and the transforms in `drop` left out)."""
    return [["crop", {**_CROP, **changes}]] + [
        list(t) for t in _DEFAULT.transforms if t[0] != "crop" and t[0] not in drop]


VARIANTS: dict[str, dict] = {
    DEFAULT_PRESET: {},
    "canvas 1x (224 px)": {"canvas_scale": 1.0},
    "canvas 3x": {"canvas_scale": 3.0},
    "no leaky target": {"leaky_target": False},
    "copies 2": {"ensemble": 2},
    "copies 8": {"ensemble": 8},
    "lr 0.025": {"lr": 0.025},
    "lr 0.1": {"lr": 0.1},
    "cosine schedule": {"schedule": "cosine"},
    "bf16": {"precision": "bf16"},
    # Coarse to fine (vitviz.models.resolution): early steps see the crops at half size, 1/4 the work.
    "coarse first 1/2 of the steps": {"coarse_steps": 0.5},
    "coarse first 3/4 of the steps": {"coarse_steps": 0.75},
    "bf16, coarse first 1/2": {"precision": "bf16", "coarse_steps": 0.5},
    # Token dropout (vitviz.rendering.token_dropout): each copy enters the blocks with part of its patches.
    "tokens 1/2 per copy": {"keep_tokens": 0.5},
    "tokens 1/2 per copy, copies 8": {"keep_tokens": 0.5, "ensemble": 8},
    "crops 1/4 to all (the default before)": {"transforms": _crop(min_area=0.25)},
    "crops 1/16 to 1/4": {"transforms": _crop(min_area=0.0625, max_area=0.25)},
    "rotation fused into the crop": {"transforms": _crop(("rotate",), degrees=10.0)},
    "no overhang": {"transforms": _crop(overhang=0.0)},
    "maco": _MACO,
    "maco, canvas 2x, leaky target": {**_MACO, "canvas_scale": 2.0, "leaky_target": True},
    "phase only (MACO's image)": _PHASE,
    # The natural-statistics prior (vitviz.rendering.natural): first-block statistics and saturation
    # held near the photos'.
    "natural statistics 0.3": {**_NO_PHOTO_PRIOR, "natural_stats": 0.3},
    "natural statistics 1": {**_NO_PHOTO_PRIOR, "natural_stats": 1.0},
    # The exemplar-statistics prior (vitviz.rendering.exemplar_stats): first-block features held to
    # their distribution on the unit's photo-disjoint natural exemplars.
    "exemplar statistics 1": {"exemplar_stats": 1.0, "priors_yield": False},
    "exemplar statistics 5": {"priors_yield": False},
    # The same, only at layers 0.6 or more of the way into the model (layers.block_depth).
    "exemplar statistics 5 from depth 0.6": {"exemplar_stats_from": 0.6, "priors_yield": False},
    # The same, yielding to the objective (vitviz.rendering.yielding), never against the drive
    # nor pulling harder than it, is the default since 2026-12-07. The default before:
    "no exemplar statistics (the default before)": _NO_PHOTO_PRIOR,
    "natural statistics 1, yielding": {"exemplar_stats": 0.0, "natural_stats": 1.0},
    # The unit's share of its layer (vitviz.rendering.unit_share): driven against the layer's
    # mean positive activation.
    "unit share 1": {**_NO_PHOTO_PRIOR, "unit_share": 1.0},
    # Token focus (vitviz.rendering.token_focus): the unit driven over its strongest quarter
    # of the patch tokens (its weakest when minimising), not their mean.
    "token focus 1/4": {"token_focus": 0.25},
    # The plain start (vitviz.rendering.plain_start): each picture starts at the colour of the
    # reference view whose flat field drives its unit most, not at grey.
    "plain start": {"plain_start": True},
    # The same prior at depth: the stream into the unit's block (exemplar_stats.feeding_block).
    "deep exemplar statistics 1": {**_NO_PHOTO_PRIOR, "exemplar_deep": 1.0},
    "deep exemplar statistics 5": {**_NO_PHOTO_PRIOR, "exemplar_deep": 5.0},
    # The drive cap (vitviz.rendering.drive_cap): the objective stops pushing at this multiple of
    # the unit's strongest photo-disjoint natural exemplar, and the priors have the rest.
    "exemplar statistics 5, capped at 2x": {"priors_yield": False, "drive_cap": 2.0},
    "natural statistics 1, capped at 2x": {**_NO_PHOTO_PRIOR, "natural_stats": 1.0, "drive_cap": 2.0},
    "phase only, lr 0.3": {**_PHASE, "lr": 0.3},
    "phase only, copies 8": {**_PHASE, "ensemble": 8},
    "phase only, canvas 1x": {**_PHASE, "canvas_scale": 1.0},
    # The spectrum's slope, each down to 1 cycle (they came before the default's floor).
    "1/f image (the default before 1/f^1.5)": {"param_kwargs": {"decay": 1.0}},
    "1/f^1.25 image": {"param_kwargs": {"decay": 1.25}},
    "1/f^2 image": {"param_kwargs": {"decay": 2.0}},
    "1/f^1.5 down to 1 cycle (the default before the floor)": {"param_kwargs": {"decay": 1.5}},
    "1/f^1.5, flat below 4 cycles": {"param_kwargs": {"decay": 1.5, "floor": 4}},
    "phase only, MACO's crops": {**_PHASE, "transforms": _crop(min_area=0.15, max_area=0.8)},
    # The default before the canvas, crops and leaky target (vitviz 0.1.0, algorithm 1).
    "previous default": {
        "canvas_scale": 1.0, "leaky_target": False, "param_kwargs": {"decay": 1.0},
        "transforms": [["pad", {"width": 16}], ["jitter", {"pixels": 16}],
                       ["scale", {"low": 0.9, "high": 1.1}], ["rotate", {"degrees": 10.0}],
                       ["jitter", {"pixels": 8}], ["noise", {"std": 0.05, "anneal": True}]],
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[5, 8])
    parser.add_argument("--units", default="random:3", help="per block, as in the report")
    parser.add_argument("--unit-seed", type=int, default=0,
                        help="draws the random units, as the report's --unit-seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help=f"some of: {', '.join(VARIANTS)}")
    parser.add_argument("--judge", choices=JUDGES,
                        help="default: the first judge independent of --model")
    parser.add_argument("--accentuated", type=int, nargs="?", const=0, metavar="STEPS",
                        help="judge accentuated exemplars too, made by gradient: the default "
                             "preset started from the units' photos, at STEPS steps (default: "
                             "--steps); those mixed with the pictures, the report's default: "
                             "bench/beside_photos.py --accentuated")
    parser.add_argument("--accentuated-knobs", type=json.loads, default={}, metavar="JSON",
                        help='knobs the accentuated exemplars change in the default preset, '
                             'e.g. \'{"drive_cap": 1.5}\'')
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--grid", type=Path, metavar="PNG",
                        help="draw each unit's strongest photos, then every variant's maximising "
                             "seeds and first minimising seed, as the report's grid")
    parser.add_argument("--units-per-run", type=int, default=UNITS_PER_RUN,
                        help="units optimised as one batch (more on a GPU)")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: use some of {list(VARIANTS)}")
    check_settings(args.seeds, [DEFAULT_PRESET], args.judge)

    model = load_model(args.model, None if torch.cuda.is_available() else "cpu")
    layers = [f"encoder.layers.encoder_layer_{block}.mlp.1" for block in args.blocks]
    chosen = layer_units(model, layers, args.units, args.unit_seed)
    variants = {name: (DEFAULT_PRESET, {**VARIANTS[name], "steps": args.steps})
                for name in args.variants}
    cache = ResultCache(args.cache) if args.cache else ResultCache()
    judge_name = args.judge or independent_judge(model.registry_name)
    found = compare(model, chosen, variants, list(range(args.seeds)), cache, judge_name,
                    args.units_per_run,
                    accentuated=(DEFAULT_PRESET, {**args.accentuated_knobs,
                                                  "steps": args.accentuated or args.steps})
                    if args.accentuated is not None else None, accentuate_by="gradient")
    summary = {"model": model.label, "judge": judge_summary(judge_name, model.registry_name), "layers": chosen, "seeds": args.seeds, "steps": args.steps,
               "variants": {name: VARIANTS[name] for name in args.variants},
               "photo_set": next(iter(found.layers.values()))["photo_set"],
               "presets": found.figures, "exemplars": found.exemplars,
               **({"accentuated": found.accentuated,
                   "accentuated_knobs": args.accentuated_knobs} if found.accentuated else {})}
    print_table(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    if args.grid:
        args.grid.write_bytes(comparison_grid(found, chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
