"""The atlas end to end against the optimisation loop alone, on the same units and steps, in
the same run (not a test): units per hour of each, their ratio, and where the atlas's extra
time goes.

    python bench/atlas_overhead.py --model dinov2_vits14 --units 32 --steps 16 --batch-units 8
    python bench/atlas_overhead.py --model vit_b_16:random --units 256 --batch-units 64  # GPU

The loop alone (`optimise` with no images kept: the steps and nothing else) on every other
batch of units, then `run_atlas` on all the units as one job into a fresh cache (the steps,
the images kept, the quality figures, the PNG archives written while the next batch
optimises, the cache writes), then the loop alone on the other batches: the loop's time
brackets the atlas's, so drift in the machine's speed hits both. The atlas's own parts are
timed by wrapping the functions it calls. The
layer's photo statistics, which the quality figures need once per layer, are measured apart
("once per layer") and left out of the steady-state ratio, which is what a whole layer
approaches; both ratios are printed. Run it alone: on 2 cores a second torch process slows
every step.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import vitviz.surveys.atlas as atlas
from vitviz.data.photo_sets import examples_for
from vitviz.models.layers import default_layer
from vitviz.models.registry import default_model, load_model
from vitviz.rendering import objectives
from vitviz.rendering.loop import optimise, resolve_preset
from vitviz.rendering.presets import DEFAULT_PRESET
from vitviz.store.cache import ResultCache


@contextmanager
def timed_parts(spent: dict[str, float]):
    """Time what the atlas calls, by name, while the block runs."""
    wrapped = {"compute_result (steps + images kept)": (atlas, "compute_result"),
               "quality figures": (atlas, "result_metrics"),
               # On the atlas's writer threads, beside the next batch's steps.
               "archive + cache write (overlapped)": (ResultCache, "put")}
    originals = {}
    for label, (owner, name) in wrapped.items():
        original = getattr(owner, name)
        originals[(owner, name)] = original

        def timing(*args, _original=original, _label=label, **kwargs):
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - began

        setattr(owner, name, timing)
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's own")
    parser.add_argument("--batch-units", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = load_model(args.model or default_model()[0])
    layer = args.layer or default_layer(model)
    preset = resolve_preset(DEFAULT_PRESET, **({"steps": args.steps} if args.steps else {}))
    units = list(range(args.units))
    chunks = [units[i:i + args.batch_units] for i in range(0, len(units), args.batch_units)]

    began = time.perf_counter()
    examples_for(model, layer, "patch")
    once = time.perf_counter() - began
    loop_s = 0.0
    parts: dict[str, float] = defaultdict(float)

    def loop_alone(chunks: list[list[int]]) -> float:
        began = time.perf_counter()
        for chunk in chunks:
            objective = objectives.neuron(layer, tuple(chunk))
            for _ in optimise(model, objective, [0] * len(chunk), preset, record_every=0):
                pass
        return time.perf_counter() - began

    with tempfile.TemporaryDirectory() as scratch:
        cache = ResultCache(Path(scratch) / "cache")
        loop_s += loop_alone(chunks[::2])
        began = time.perf_counter()
        with timed_parts(parts):
            done = list(atlas.run_atlas(model, layer, units, cache, steps=preset.steps,
                                        batch_units=args.batch_units))
        atlas_s = time.perf_counter() - began
        loop_s += loop_alone(chunks[1::2])
        assert len(done) == len(units)
    per_hour = {"loop alone": len(units) / loop_s * 3600, "atlas": len(units) / atlas_s * 3600,
                "atlas with the layer's set-up": len(units) / (atlas_s + once) * 3600}
    figures = {
        "model": model.label, "layer": layer, "device": str(model.device),
        "units": len(units), "steps": preset.steps, "batch_units": args.batch_units,
        "seconds": {"loop alone": loop_s, "atlas": atlas_s, "once per layer": once,
                    **{f"atlas: {label}": value for label, value in parts.items()}},
        "units_per_hour": per_hour,
        "ratio": per_hour["atlas"] / per_hour["loop alone"],
        "ratio_with_setup": per_hour["atlas with the layer's set-up"] / per_hour["loop alone"],
    }
    print(f"{model.label} · {layer} · {len(units)} units x {preset.steps} steps, "
          f"{args.batch_units} per batch, {model.device}")
    for label, value in figures["seconds"].items():
        print(f"  {label:45} {value:8.1f} s")
    for label, value in per_hour.items():
        print(f"  {label:45} {value:8.0f} units/hour")
    print(f"  atlas / loop alone: {figures['ratio']:.0%} (with the layer's set-up: "
          f"{figures['ratio_with_setup']:.0%})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
