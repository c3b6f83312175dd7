"""Command line: `python -m vitviz run|layers|models|judge|report ...`."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from vitviz import __version__
from vitviz.common.paths import home, writable_folder
from vitviz.data.photos import MAX_PIXELS
from vitviz.errors import UserError
from vitviz.models.exported import is_model_file, load_exported
from vitviz.models.layers import ROLE_LABELS, default_layer, layer_table
from vitviz.models.registry import MODELS, default_model, load_model
from vitviz.models.user_models import load_user_models, model_from_factory
from vitviz.quality.judge import JUDGES
from vitviz.rendering import accentuate, objectives
from vitviz.rendering.presets import DEFAULT_PRESET, PRECISIONS, PRESETS
from vitviz.store.cache import ResultCache
from vitviz.store.runs import MAX_ITEMS, RunRequest, cached_result, parse_units


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name (default: vit_b_16 if its weights are cached, "
                        "else dinov2_vits14; `python -m vitviz models` lists them), a library's "
                        "model from its local cache (timm:NAME, hf:ORG/NAME, open_clip:ARCH/TAG; "
                        "':random' for an untrained copy), or path/to/file.py:factory where "
                        "factory() returns vitviz.wrap(...), or a model.pt2 written by "
                        "vitviz.save_exported(...)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: CUDA when available)")
    parser.add_argument("--compile", action="store_const", const=True, default=None,
                        help="run the blocks before the target through torch.compile: faster "
                        "steps for large batches on a GPU after a compile of about a minute "
                        "(default: $VITVIZ_COMPILE)")


def _atlas_arguments(parser: argparse.ArgumentParser) -> None:
    """What names an atlas's runs: model, layer, units and the run settings."""
    _model_argument(parser)
    parser.add_argument("--layer", "--layers", nargs="+", required=True, dest="layer",
                        help="layer names, roles (mlp_hidden: every MLP hidden layer, "
                             "block_output, attention_output) or shell patterns such as "
                             "'encoder.layers.*.mlp.1'; each layer's units in turn")
    parser.add_argument("--units", default="all", help="all, a range such as 0-63, or 3,7,9 "
                        "(of each layer)")
    parser.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET)
    parser.add_argument("--steps", type=int, help="default: the preset's own")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minimise", action="store_true",
                        help="the pictures of what drives each unit down (suppresses it)")


def _atlas_plan(args, model) -> dict[str, list[int]]:
    """The layers of an atlas (--layer names, roles or patterns) and each one's --units: a
    range or list, or all; checked against each layer's size before any list is built
    (`parse_units`)."""
    from vitviz.models.layers import find_layer, match_layers

    plan = {}
    for layer in match_layers(model, args.layer):
        units = find_layer(model, layer).units
        plan[layer] = (list(range(units)) if args.units.strip() == "all"
                       else parse_units(args.units, units, layer))
    return plan


def _cache_folder(args) -> Path | None:
    """--cache, checked before any work: a folder that is or can be written."""
    return writable_folder(args.cache) if args.cache is not None else None


def _engine_arguments(parser: argparse.ArgumentParser, work: str, product: str) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help=f"ray: "
                        f"{work} on Ray actors, locally or on the cluster that RAY_ADDRESS "
                        f"names (needs pip install 'ray[data]'); both engines give the same "
                        f"{product}")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors holding the model")


def _resolve_model_name(args) -> str:
    if args.model and ".py:" in args.model:
        return model_from_factory(args.model).registry_name
    if args.model and is_model_file(args.model):
        return load_exported(args.model).registry_name
    if args.model:
        return args.model
    name, reason = default_model()
    print(f"model: {name} ({reason})", file=sys.stderr)
    return name


def token_mode(text: str) -> str | int:
    """--tokens: a mode name (patch, cls, all) or a token index."""
    return int(text) if text.lstrip("-").isdigit() else text


def build_objective(kind: str, layer: str, units: list[int], tokens: str) -> objectives.Objective:
    unit = units[0] if len(units) == 1 else tuple(units)
    return objectives.unit_objective(kind, layer, unit, token_mode(tokens))


def cmd_run(args) -> int:
    name = _resolve_model_name(args)
    model = None
    if not args.layer:
        model = load_model(name, args.device, args.compile)
        args.layer = default_layer(model)
        print(f"layer: {args.layer} (default: MLP hidden layer of the middle block)", file=sys.stderr)
    units = args.unit
    seeds = args.seeds
    if len(units) * len(seeds) > MAX_ITEMS:  # checked before the lists are multiplied out
        raise UserError(f"a run holds at most {MAX_ITEMS} pictures: {len(units)} units x "
                        f"{len(seeds)} seeds is {len(units) * len(seeds)}")
    if len(units) > 1:
        # Several units: each unit runs with each seed, all in one batch.
        units, seeds = [u for u in units for _ in seeds], [s for _ in units for s in seeds]
    objective = build_objective(args.objective, args.layer, units, args.tokens)
    overrides = {k: v for k, v in {"steps": args.steps, "lr": args.lr, "canvas": args.image_size,
                                   "ensemble": args.ensemble, "precision": args.precision,
                                   "coarse_steps": args.coarse_steps,
                                   "keep_tokens": args.keep_tokens,
                                   "exemplar_stats": args.exemplar_stats,
                                   "exemplar_deep": args.exemplar_deep,
                                   "drive_cap": args.drive_cap,
                                   "priors_yield": args.priors_yield,
                                   "unit_share": args.unit_share,
                                   "token_focus": args.token_focus,
                                   "plain_start": args.plain_start,
                                   "accentuate_weight": args.accentuate_weight,
                                   "accentuate_decay": args.accentuate_decay}.items()
                 if v is not None}
    request = RunRequest(name, objective.spec(), tuple(seeds), args.preset, overrides,
                         record_every=args.record_every, moving_target=args.moving_target,
                         frozen_context=args.frozen_context, minimise=args.minimise,
                         accentuate=args.accentuate)
    request.check()
    writable_folder(args.out)  # checked, not made: a run stopped early leaves no empty folder
    total = request.resolved_preset().steps
    cache = None if args.no_cache else ResultCache(_cache_folder(args))
    bars = []  # made at the first step: a request the model refuses shows no bar

    def progress(record, steps):
        if not bars:
            bars.append(tqdm(total=total, desc=f"{args.preset} x{len(seeds)}", unit="step"))
        extreme = min if args.minimise else max
        bars[0].set_postfix(act=f"{extreme(record.activation):.3g}", refresh=False)
        bars[0].update(record.step - bars[0].n)

    try:
        result, cached = cached_result(request, cache,
                                       lambda n: model or load_model(n, args.device, args.compile),
                                       progress, measure=not args.no_metrics)
    finally:
        for bar in bars:
            bar.close()
    if cached:
        print("served from the result cache (nothing recomputed)", file=sys.stderr)
    for label, parts in zip(result.item_labels(), result.metrics.get("moving_target", [])):
        print(f"moving target, {label}: gain {parts['total']:+.3g} = content "
              f"{parts['content_order_free']:+.3g} + context {parts['context_order_free']:+.3g} "
              f"(order-free; content first: {parts['content']:+.3g} + {parts['context']:+.3g})",
              file=sys.stderr)
    for path in result.save(args.out):
        print(path)
    return 0


def cmd_layers(args) -> int:
    model = load_model(_resolve_model_name(args), args.device, args.compile)
    print(f"# {model.label}")
    print(f"{'layer':55} {'type':22} {'output shape':18} note")
    for info in layer_table(model):
        if args.recommended and not info.role:
            continue
        mark = ("* " if info.recommended else "  ") + ROLE_LABELS.get(info.role, "")
        print(f"{info.name:55} {info.type:22} {str(list(info.shape)):18} {mark}".rstrip())
    print("# * recommended targets; shapes exclude the batch axis")
    return 0


def cmd_models(args) -> int:
    default, reason = default_model()
    for name, spec in MODELS.items():
        status = "available" if spec.available() else "weights missing"
        print(f"{name:15} {spec.architecture:4} {status:16} {spec.description}")
    print(f"# default: {default} ({reason})")
    print("# and a library's ViTs from its local cache: timm:NAME, hf:ORG/NAME, "
          "open_clip:ARCH/TAG (':random' for an untrained copy)")
    return 0


def cmd_index(args) -> int:
    from vitviz.data.index import build_index

    writable_folder(args.index_dir or home() / "indexes")
    model = load_model(_resolve_model_name(args), args.device, args.compile)
    bars = []  # made at the first batch: a refused request shows no bar

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="indexing", unit="image"))
        bars[0].update(done - bars[0].n)

    try:
        index, added = build_index(model, args.layers, args.photos,
                                   args.index_dir or home() / "indexes",
                                   tokens=token_mode(args.tokens), k=args.k,
                                   batch_size=args.batch_size, engine=args.engine,
                                   workers=args.workers, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    print(f"{index.path}: {index.count} images ({added} added this run, {len(index.skipped)} "
          f"unreadable files skipped), {len(index.layers)} layer(s)")
    if index.skipped:
        shown = ", ".join(entry.split("|")[0] for entry in index.skipped[:5])
        more = f" and {len(index.skipped) - 5} more" if len(index.skipped) > 5 else ""
        print(f"skipped (not an image, truncated, empty, or over {MAX_PIXELS:,} px; not tried "
              f"again until changed): {shown}{more}", file=sys.stderr)
    return 0


def cmd_atlas(args) -> int:
    from vitviz.surveys.atlas import check_plan, read_units, run_layers, start_engine

    if args.batch_units.strip().isdigit() and int(args.batch_units) >= 1:
        batch_units = int(args.batch_units)
    elif args.batch_units.strip() != "auto":
        raise UserError(f"--batch-units must be a whole number from 1, or auto "
                        f"(got {args.batch_units[:40]!r})")
    else:
        batch_units = None
    cache_folder = _cache_folder(args)
    model = load_model(_resolve_model_name(args), args.device, args.compile)
    plan = _atlas_plan(args, model)
    check_plan(model, plan, args.seed, args.preset, args.steps, "patch", args.engine,
               args.workers, batch_units)  # before the cache folder is made
    start_engine(args.engine, args.workers)
    cache = ResultCache(cache_folder)
    bar = tqdm(desc=f"atlas of {len(plan)} layer{'s' if len(plan) > 1 else ''}", unit="unit")

    def progress(done: int, total: int, seconds: float) -> None:
        bar.total = total
        bar.set_postfix(units_per_hour=f"{done / max(seconds, 1e-9) * 3600:.0f}", refresh=False)
        bar.update(done - bar.n)

    computed = Counter(layer for layer, _, _ in run_layers(
        model, plan, cache, seed=args.seed, preset=args.preset, steps=args.steps,
        batch_units=batch_units, engine=args.engine, workers=args.workers, progress=progress,
        minimise=args.minimise))
    bar.close()
    for layer, units in plan.items():
        print(f"{len(units)} units of {layer}: {computed[layer]} computed, "
              f"{len(units) - computed[layer]} already in the cache ({cache.path})")
        if args.judge:
            read = read_units(model, layer, units, cache, seed=args.seed, preset=args.preset,
                              steps=args.steps)
            print(f"  read by the independent judge: {len(read)} of them, those drawn both "
                  f"ways (an atlas up and one with --minimise)")
    return 0


def cmd_export_atlas(args) -> int:
    from vitviz.surveys.atlas import check_plan
    from vitviz.surveys.atlas_site import export_layers

    if args.cache is not None and not args.cache.is_dir():
        raise UserError(f"there is no result cache at {args.cache}: point --cache at the "
                        "folder `python -m vitviz atlas --cache` wrote")
    writable_folder(args.out)
    # The model tells the layers and their units: an unknown layer or a unit beyond one is
    # refused, never exported as an empty site.
    model = load_model(_resolve_model_name(args), args.device, args.compile)
    plan = _atlas_plan(args, model)
    check_plan(model, plan, args.seed, args.preset, args.steps)
    bars: list = []

    def progress(done: int) -> None:
        # Made at the first unit done, so that a site with nothing to write ends in its one
        # error line, with no bar before it.
        if not bars:
            bars.append(tqdm(total=sum(map(len, plan.values())), desc="site", unit="unit"))
        bars[0].update(done)

    try:
        counts = export_layers(model.registry_name, plan, ResultCache(args.cache), args.out,
                               seed=args.seed, preset=args.preset, steps=args.steps,
                               minimise=args.minimise, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    computed = sum(count["computed"] for count in counts.values())
    units = sum(count["units"] for count in counts.values())
    print(f"{args.out / 'index.html'}: {computed} of {units} units of {len(plan)} "
          f"layer{'s' if len(plan) > 1 else ''} ({units - computed} not in the cache: "
          "`python -m vitviz atlas` with the same settings computes them)")
    return 0


def cmd_judge(args) -> int:
    import json

    from vitviz.api import judge_unit
    from vitviz.quality.reading import summary_lines

    cache_folder = None if args.no_cache else _cache_folder(args)
    if args.json is not None:
        writable_folder(args.json.parent)
    model = load_model(_resolve_model_name(args), args.device, args.compile)
    layer = args.layer or default_layer(model)
    bars = []

    def progress(record, total):
        if not bars or bars[-1].n > record.step:  # a new run: up, then down, unless cached
            if bars:
                bars[-1].close()
            bars.append(tqdm(total=total, desc="pictures", unit="step"))
        bars[-1].update(record.step - bars[-1].n)

    steps = {"steps": args.steps} if args.steps is not None else {}
    try:
        reading = judge_unit(model, layer, args.unit, args.seeds, token_mode(args.tokens),
                             args.judge, None if args.no_cache else ResultCache(cache_folder),
                             progress, **steps)
    finally:
        for bar in bars:
            bar.close()
    print(f"{model.registry_name} {layer} unit {args.unit}, against {reading['photo_set']}")
    for line in summary_lines(reading):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(reading, indent=1))
    return 0


def cmd_report(args) -> int:
    from vitviz.surveys.report import main as report_main

    return report_main(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m vitviz", description=__doc__)
    top.add_argument("--version", action="version", version=f"vitviz {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("run", help="visualise a unit; writes one PNG per seed and result.json")
    _model_argument(p)
    p.add_argument("--layer", help="module name as named_modules() prints it (see `layers`)")
    p.add_argument("--unit", type=int, nargs="+", default=[0], help="unit index (several: one batch)")
    p.add_argument("--objective", choices=list(objectives.UNIT_OBJECTIVES),
                   default="neuron", help="seed_compat reproduces the blog's activation[:, n]")
    p.add_argument("--tokens", default="patch", help="patch (mean, default), cls, all, or an index")
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--image-size", type=int, help="size of the optimised image (canvas)")
    p.add_argument("--ensemble", type=int, help="augmented copies per image and step")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="the network's arithmetic: bf16 is about 2x faster on CPUs with "
                        "AVX-512 BF16 or AMX and on recent GPUs; auto takes it where the hardware "
                        "has it (default: the preset's; robust: auto)")
    p.add_argument("--coarse-steps", type=float,
                   help="fraction of the first steps that feed a ViT its crops at half size "
                        "(a quarter of the work; default: the preset's; 0 turns it off)")
    p.add_argument("--keep-tokens", type=float,
                   help="fraction of its patch tokens each augmented copy feeds a ViT's blocks "
                        "(token dropout: about that fraction of the work; default: the "
                        "preset's; 1 keeps every token)")
    p.add_argument("--exemplar-stats", type=float, metavar="WEIGHT",
                   help="hold the picture's first-block features to their distribution on the "
                        "unit's strongest photo views (its weakest with --minimise): the "
                        "exemplar-statistics prior; 0 turns it off (default: the preset's; "
                        "robust: 5)")
    p.add_argument("--exemplar-deep", type=float, metavar="WEIGHT",
                   help="the same at depth: hold the features of the block output that feeds "
                        "the unit's block to their distribution on those photo views; 0 turns "
                        "it off (default: the preset's)")
    p.add_argument("--drive-cap", type=float, metavar="FACTOR",
                   help="stop pushing the unit past FACTOR times its strongest photo view (its "
                        "weakest with --minimise), leaving the rest of the steps to the priors; "
                        "0 turns it off (default: the preset's)")
    p.add_argument("--priors-yield", action=argparse.BooleanOptionalAction, default=None,
                   help="the natural- and exemplar-statistics priors yield to the objective: "
                        "never against the unit's drive, never pulling harder than it "
                        "(default: the preset's; robust: yes)")
    p.add_argument("--unit-share", type=float, metavar="WEIGHT",
                   help="drive the unit against its layer's mean positive activation, not "
                        "only up: what sets it apart, not what excites its whole layer; 0 "
                        "turns it off (default: the preset's)")
    p.add_argument("--token-focus", type=float, metavar="FRACTION",
                   help="drive the unit over this fraction of its patch tokens where it is "
                        "strongest (weakest with --minimise), not over their mean: the picture "
                        "carries it in part of the image; 1 turns it off (default: the preset's)")
    p.add_argument("--plain-start", action=argparse.BooleanOptionalAction, default=None,
                   help="start the picture at the colour of the unit's own photo view whose "
                        "flat field drives it most, not at grey (default: the preset's; "
                        "robust: no)")
    p.add_argument("--record-every", type=int, help="keep images every N steps (default: "
                   "steps // 8, as the pages, the atlas and visualise(): their runs are shared)")
    p.add_argument("--moving-target", action="store_true", help="record attention-context statistics")
    p.add_argument("--frozen-context", action="store_true",
                   help="optimise with every attention map held at its value for the starting "
                        "image: the moving target stopped")
    p.add_argument("--minimise", action="store_true",
                   help="drive the unit down instead of up: what suppresses it")
    p.add_argument("--accentuate", type=int, metavar="RANK",
                   help="accentuated exemplar: start from the unit's photo view of this rank "
                        "(0: its strongest; its weakest with --minimise) instead of noise")
    p.add_argument("--accentuate-weight", type=float, metavar="WEIGHT",
                   help="with --accentuate, how hard the picture is held to its photo's "
                        "first-block features: lower changes the photo more (default: "
                        f"{accentuate.WEIGHT:g})")
    p.add_argument("--accentuate-decay", type=float, metavar="DECAY",
                   help="with --accentuate, how fast the change's spectrum falls: higher keeps "
                        "it to shapes and colour, lower lets fine texture in (default: "
                        f"{accentuate.DECAY:g})")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, help="result cache directory (default: $VITVIZ_CACHE_DIR, else ~/.cache/vitviz/results)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip the quality figures (they measure the layer on the photo set once)")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("layers", help="print the layer table with output shapes")
    _model_argument(p)
    p.add_argument("--recommended", action="store_true", help="only layers with a role")
    p.set_defaults(func=cmd_layers)

    p = commands.add_parser("models", help="list models and whether their weights are here")
    p.set_defaults(func=cmd_models)

    p = commands.add_parser("atlas", help="visualise many units of a layer, several per batch, "
                            "each cached as the single run the dashboard asks for")
    _atlas_arguments(p)
    p.add_argument("--batch-units", default="auto", help="units optimised together, or auto: "
                   "as many as fit in half the memory free now (at most 64), per layer")
    _engine_arguments(p, "batches", "pictures")
    p.add_argument("--cache", type=Path, help="result cache directory (default: "
                   "$VITVIZ_CACHE_DIR, else vitviz's home folder; point it at the dashboard's "
                   "cache/ to serve the atlas there)")
    p.add_argument("--judge", action="store_true",
                   help="then read each unit drawn both ways (this atlas and its --minimise "
                        "twin) with the independent judge, stored for the pages and the site")
    p.set_defaults(func=cmd_atlas)

    p = commands.add_parser("index", help="an activation index over a folder of images: each "
                            "unit's top and bottom images and statistics, resumable")
    _model_argument(p)
    p.add_argument("--layers", "--layer", nargs="+", required=True)
    p.add_argument("--photos", type=Path, required=True, help="folder of jpg/png/webp images "
                   "(searched recursively)")
    p.add_argument("--tokens", default="patch", help="patch (mean, default), cls, all, or an index")
    p.add_argument("--k", type=int, default=16, help="top and bottom images kept per unit")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--index-dir", type=Path, help="where indexes live (default: "
                   "vitviz's home folder, indexes/)")
    _engine_arguments(p, "forward passes", "index")
    p.set_defaults(func=cmd_index)

    p = commands.add_parser("export-atlas", help="a static site of an atlas from the result "
                            "cache: an index grid and one page per unit, for any static host")
    _atlas_arguments(p)
    p.add_argument("--out", type=Path, default=Path("atlas-site"))
    p.add_argument("--cache", type=Path, help="result cache the atlas was stored in")
    p.set_defaults(func=cmd_export_atlas)

    p = commands.add_parser("judge", help="one unit's pictures, driven up and down, read by an "
                            "independent judge beside the unit's natural exemplars")
    _model_argument(p)
    p.add_argument("--layer", help="module name as named_modules() prints it (default: the MLP "
                   "hidden layer of the middle block)")
    p.add_argument("--unit", type=int, default=0)
    p.add_argument("--tokens", default="patch", help="patch (mean, default), cls, all, or an index")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="the seeds of each direction's pictures (two give the report's 9 "
                        "references a side)")
    p.add_argument("--steps", type=int, help="default: the default preset's own")
    p.add_argument("--judge", choices=JUDGES, help="the judge's network (default: the first "
                   "of these that shares nothing with --model)")
    p.add_argument("--json", type=Path, help="also write the reading to this file")
    p.add_argument("--cache", type=Path, help="result cache directory (default: "
                   "$VITVIZ_CACHE_DIR, else ~/.cache/vitviz/results)")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_judge)

    p = commands.add_parser("report", help="presets compared over many units with figures "
                            "noise cannot win (robust activation, specificity, the judge)")
    _model_argument(p)
    p.add_argument("--layers", "--layer", nargs="+", required=True,
                   help="one or more layers, e.g. the mlp.1 of several blocks")
    p.add_argument("--units", default="random:8",
                   help="per layer: a range such as 0-31 or 3,7,9, or random:N (default random:8)")
    p.add_argument("--unit-seed", type=int, default=0, help="seed of the random:N draw")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds per unit (at least 2)")
    p.add_argument("--steps", type=int, help="steps for every preset (default: each preset's own)")
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--judge", choices=JUDGES, help="the judge's network (default: the first "
                   "of these that shares nothing with --model)")
    p.add_argument("--accentuated", nargs="?", const=accentuate.METHODS[0],
                   choices=accentuate.METHODS,
                   metavar="HOW", help="judge accentuated exemplars too: the unit's photo-disjoint "
                   "exemplars, each mixed with its default pictures as little as it takes to "
                   "drive it to its strongest photo's level (picture, the default), or the default "
                   "preset run from each (gradient)")
    p.add_argument("--tile", type=int, default=160, help="pixels per picture in grid.png")
    p.add_argument("--out", type=Path, default=Path("report"))
    p.add_argument("--cache", type=Path)
    p.set_defaults(func=cmd_report)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        load_user_models()
        return args.func(args)
    except UserError as error:  # its message says what to do: one line, no traceback
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder or file the command was pointed at: one line too
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 2


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())

