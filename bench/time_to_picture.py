"""Time to a good picture (not a test): seconds until a picture reaches 90% of its final quality.

    python bench/time_to_picture.py                        # dinov2_vits14 block 6, 2 units x 2 seeds
    python bench/time_to_picture.py --contenders vitviz lucent --units 5 77 300

Contenders, each with its own defaults and on the same model, layer, units and seeds: vitviz's
default preset, torch-lucent's `render_vis` (512 steps) and Horama's `maco` (1000 steps).
For each, pictures are taken at checkpoints along one run (Lucent's thresholds; a wrapper
around Horama's image function; vitviz's records) and scored with the quality report's
figures, which noise cannot win:

- robust activation: the unit's mean over shifted and zoomed views, as a multiple of its
  maximum over the photo set (averaged over the pictures);
- specificity: same-unit minus different-unit similarity of the pictures in an independent
  model's feature space (needs two units or more, two seeds each).

A contender's time at a checkpoint is steps x its seconds per step at batch 1, measured in the
same run with bench/speed.py's interleaved timers (equal warm-up); "time to 90%" is the first
checkpoint where both figures are at least 90% of that contender's own final ones. The final
figures are printed beside it, so a contender that is fast to a poor picture shows as such.

Horama downloads ImageNet's magnitude spectrum on first use; there is no network here, so it
gets the same statistic computed from vitviz's built-in photos (the one vitviz's `maco`
preset uses). Run it alone: a second torch process on 2 cores slows every step.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys

import numpy as np
import torch
from speed import (
    difference_timer,
    horama_objective,
    horama_spectrum,
    interleaved,
    lucent_objective,
    run_seconds,
    vitviz_timer,
)

from vitviz.data.photo_sets import photo_statistics
from vitviz.models.layers import default_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.registry import default_model, load_model
from vitviz.quality.metrics import embed, relative_activation, robust_figures, specificity
from vitviz.rendering import objectives
from vitviz.rendering.loop import optimise
from vitviz.rendering.precision import resolve_precision
from vitviz.rendering.presets import DEFAULT_PRESET, Preset, get_preset

# Pictures by checkpoint step: {step: [N, 3, H, W] in [0, 1]}, items in (unit, seed) order.
Pictures = dict[int, torch.Tensor]


def checkpoints(final: int, count: int = 8) -> list[int]:
    """About `count` steps, doubling from the start and evenly spaced near the end."""
    steps = {final}
    step = max(1, final // 64)
    while step < final:
        steps.add(step)
        step *= 2
    steps.update(round(final * f) for f in (0.375, 0.75))
    return sorted(s for s in steps if s >= 1)[-count:]


def vitviz_settings(knobs: dict) -> Preset:
    """vitviz's default preset with `--vitviz-knobs` changed (a variant measured beside it)."""
    return get_preset(DEFAULT_PRESET).with_overrides(**knobs)


def vitviz_pictures(model: LoadedModel, layer: str, units: list[int], seeds: list[int],
                    at: list[int], settings: Preset) -> Pictures:
    """All items in one batch (each item's result does not depend on the batch)."""
    items = [(u, s) for u in units for s in seeds]
    objective = objectives.neuron(layer, tuple(u for u, _ in items))
    pictures: Pictures = {}
    for record in optimise(model, objective, [s for _, s in items], settings, record_every=1):
        if record.step in at and record.images is not None:
            pictures[record.step] = record.images
    return pictures


def lucent_pictures(model: LoadedModel, layer: str, units: list[int], seeds: list[int],
                    at: list[int], _settings=None) -> Pictures:
    from lucent.optvis import param, render, transform

    size = model.preprocessing.size
    per_step: dict[int, list[torch.Tensor]] = {step: [] for step in at}
    for unit in units:
        for seed in seeds:
            torch.manual_seed(seed)
            images = render.render_vis(model.module, lucent_objective(model, layer, unit),
                                       lambda: param.image(size), thresholds=tuple(at),
                                       transforms=transform.standard_transforms,
                                       fixed_image_size=size, show_image=False, progress=False,
                                       verbose=False)
            for step, image in zip(at, images):
                per_step[step].append(torch.from_numpy(image[0]).permute(2, 0, 1).float())
    return {step: torch.stack(images) for step, images in per_step.items()}


def horama_pictures(model: LoadedModel, layer: str, units: list[int], seeds: list[int],
                    at: list[int], _settings=None) -> Pictures:
    """Horama's maco returns its final image only; its image function runs once per step (on
    the phase after that many updates) and once after the loop, so wrapping it yields the
    picture at every checkpoint of one run. Its learning rate is constant, so that is also
    what a run of that many steps would give."""
    import horama
    from horama import maco_fv

    per_step: dict[int, list[torch.Tensor]] = {step: [] for step in at}
    original = maco_fv.maco_preconditioner
    for unit in units:
        for seed in seeds:
            calls = [0]

            def recording(*args, **kwargs):
                image = original(*args, **kwargs)
                if calls[0] in per_step:
                    per_step[calls[0]].append(image.detach().float().cpu())
                calls[0] += 1
                return image

            torch.manual_seed(seed)
            maco_fv.maco_preconditioner = recording
            try:
                with horama_spectrum(), open(os.devnull, "w") as quiet, \
                        contextlib.redirect_stderr(quiet):
                    horama.maco(horama_objective(model, layer, unit), total_steps=max(at),
                                model_input_size=model.preprocessing.size,
                                values_range=(0.0, 1.0), device=str(model.device))
            finally:
                maco_fv.maco_preconditioner = original
    return {step: torch.stack(images) for step, images in per_step.items()}


CONTENDERS = {
    "vitviz": (vitviz_pictures, None),  # its preset's steps
    "lucent": (lucent_pictures, 512),  # render_vis's default thresholds=(512,)
    "horama": (horama_pictures, 1000),  # maco's default total_steps
}


def step_seconds(model: LoadedModel, layer: str, unit: int, entries: dict) -> dict:
    """Seconds per full-size step and per coarse step of each entry, measured here with
    bench/speed.py's interleaved timers (equal warm-up, turns over rounds)."""
    from speed import horama_render, lucent_render

    timers = {}
    for name, entry in entries.items():
        if entry["tool"] == "vitviz":
            settings = vitviz_settings(entry["knobs"])
            precision = resolve_precision(settings.precision, model.device)
            timers[name] = vitviz_timer(model, layer, unit, settings, variant=precision)
            if entry["coarse_until"]:
                timers[name + " coarse"] = vitviz_timer(model, layer, unit, settings,
                                                        variant=precision, coarse=True)
        else:
            render = (lucent_render if entry["tool"] == "lucent" else horama_render)(model, layer, unit)
            timers[name] = difference_timer(render, model.device)
    medians = {name: statistics.median(values)
               for name, values in interleaved(timers, 4, 16, 2).items()}
    return {name: (medians[name], medians.get(name + " coarse", medians[name])) for name in entries}


def score(model: LoadedModel, layer: str, units: list[int], seeds: list[int],
          pictures: torch.Tensor) -> dict:
    """The quality report's figures for one checkpoint's pictures."""
    items = [u for u in units for _ in seeds]
    stats = photo_statistics(model, layer)
    robust = robust_figures(model, layer, items, pictures)
    relative = relative_activation(robust["robust_activation"], [stats.unit_max(u) for u in items])
    figures = {"relative_robust_activation": float(np.mean(relative)),
               "robust_rank": float(np.median(robust["robust_rank"]))}
    if len(units) >= 2 and len(seeds) >= 2:
        grouped = embed(pictures).view(len(units), len(seeds), -1)
        figures["specificity"] = specificity(grouped)["specificity"]
    return figures


QUALITY = ("relative_robust_activation", "specificity")  # the figures "90%" is taken of


def steps_to_90(curve: list[dict]) -> int | None:
    """The first checkpoint where each quality figure is at least 90% of its final value (a
    figure whose final value is not positive has nothing to reach and is left out)."""
    final = curve[-1]
    kept = [k for k in QUALITY if k in final and final[k] > 0]
    for point in curve:
        if all(point[k] >= 0.9 * final[k] for k in kept):
            return point["step"]
    return None


def timings_from_speed(path: str, entries: dict, device: torch.device) -> dict:
    """Seconds per full-size and per coarse step of each entry from bench/speed.py's --json
    (contenders at batch 1, measured alone on `device`)."""
    with open(path) as handle:
        measured = {name: statistics.median(values)
                    for name, values in json.load(handle)["contenders"].items()}
    anchors = {"lucent": "torch-lucent render_vis", "horama": "horama maco"}
    seconds = {}
    for name, entry in entries.items():
        if entry["tool"] != "vitviz":
            seconds[name] = (measured[anchors[entry["tool"]]],) * 2
            continue
        if entry["coarse_until"]:
            raise SystemExit(f"bench/speed.py times no coarse steps: leave out --timings to time "
                             f"{name} here")
        precision = resolve_precision(vitviz_settings(entry["knobs"]).precision, device)
        full = measured[f"vitviz {DEFAULT_PRESET} {precision}"]
        seconds[name] = (full, full)
    return seconds


def seconds_at(entry: dict, step: int) -> float:
    """Seconds of an entry's first `step` steps (the first `coarse_until` are coarse steps)."""
    return run_seconds(step, entry["coarse_until"], entry["seconds_per_step"],
                       entry["coarse_seconds_per_step"])


def summarise(figures: dict, seconds: dict[str, tuple[float, float]]) -> None:
    for name, entry in figures["contenders"].items():
        entry["seconds_per_step"], entry["coarse_seconds_per_step"] = seconds[name]
        steps = steps_to_90(entry["curve"])
        entry.update(final_s=seconds_at(entry, entry["final_step"]), steps_to_90=steps,
                     time_to_90_s=None if steps is None else seconds_at(entry, steps))
        coarse = (f" ({entry['coarse_until']} coarse steps of {entry['coarse_seconds_per_step']:.3f} s)"
                  if entry["coarse_until"] else "")
        print(f"\n{name}: {entry['seconds_per_step']:.3f} s/step{coarse}, {entry['final_step']} "
              f"steps = {entry['final_s']:.0f} s per picture; 90% of its final quality after "
              + (f"{steps} steps, {entry['time_to_90_s']:.0f} s" if steps else "never"))
        for point in entry["curve"]:
            print("  " + "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in point.items()))
    done = {n: f["time_to_90_s"] for n, f in figures["contenders"].items()
            if f["time_to_90_s"] is not None}
    anchors = [n for n in done if figures["contenders"][n]["tool"] != "vitviz"]
    if anchors:
        best = min(anchors, key=done.get)
        for name in [n for n in done if figures["contenders"][n]["tool"] == "vitviz"]:
            print(f"\n{name}'s time to 90% is {done[name] / done[best]:.2f} x that of the "
                  f"faster anchor ({best}); target: at most 1/3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--units", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS),
                        default=list(CONTENDERS))
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="scale every contender's step count (a quick check of the script)")
    parser.add_argument("--timings", help="seconds per step from bench/speed.py's --json "
                        "(contenders at batch 1, measured alone) instead of measuring here")
    parser.add_argument("--summarise", help="a --json file of an earlier run: print its "
                        "table (with --timings) without computing pictures again")
    parser.add_argument("--json", help="write the curves and figures to this file (kept after "
                        "each contender; contenders already in it, with the same setup, stay)")
    parser.add_argument("--vitviz-knobs", type=json.loads, default={},
                        help='vitviz with these preset knobs changed, e.g. \'{"precision": "bf16"}\'')
    parser.add_argument("--label", default="", help="appended to vitviz's name in the figures "
                        "(keeps a variant beside the default in one --json file)")
    args = parser.parse_args()

    figures = None
    if args.summarise:
        with open(args.summarise) as handle:
            figures = json.load(handle)
    model = load_model(args.model or (figures or {}).get("model_name") or default_model()[0])
    layer = args.layer or default_layer(model)
    if not args.summarise:
        print(f"# {model.label}, {layer}, units {args.units}, seeds {args.seeds}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        figures = {"model": model.label, "model_name": model.registry_name, "layer": layer,
                   "units": args.units, "seeds": args.seeds, "contenders": {}}
        if args.json and os.path.exists(args.json):  # contenders of earlier runs, same setup
            with open(args.json) as handle:
                earlier = json.load(handle)
            if all(earlier.get(k) == figures[k] for k in ("model", "layer", "units", "seeds")):
                figures["contenders"] = earlier["contenders"]
        for tool in args.contenders:
            make, final = CONTENDERS[tool]
            settings, knobs, name, coarse_until = None, {}, tool, 0
            if tool == "vitviz":
                knobs, name = args.vitviz_knobs, " ".join(filter(None, [tool, args.label]))
                settings = vitviz_settings(knobs)
                final = settings.steps
            final = max(1, round(final * args.steps_scale))
            if settings:
                settings = settings.with_overrides(steps=final)
                coarse_until = round(settings.coarse_steps * final)
            at = checkpoints(final)
            pictures = make(model, layer, args.units, args.seeds, at, settings)
            figures["contenders"][name] = {
                "tool": tool, "knobs": knobs, "final_step": final, "coarse_until": coarse_until,
                "curve": [{"step": step, **score(model, layer, args.units, args.seeds, pictures[step])}
                          for step in at]}
            print(f"{name}: pictures scored", flush=True)
            if args.json:  # each contender kept as it finishes: the long ones run apart
                with open(args.json, "w") as handle:
                    json.dump(figures, handle, indent=1)
    entries = figures["contenders"]
    if args.timings:
        seconds = timings_from_speed(args.timings, entries, model.device)
    else:
        seconds = step_seconds(model, figures["layer"], figures["units"][0], entries)
    summarise(figures, seconds)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
