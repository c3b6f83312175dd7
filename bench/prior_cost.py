"""What the default's photo prior costs in time (not a test): seconds per step of the default and
of the default without its exemplar-statistics prior, timed in turns on the same units, and
the photo pass a run makes first to find each unit's exemplars.

    python bench/prior_cost.py      # dinov2_vits14 block 6, the time-to-picture bench's units

Run it alone: on 2 cores a second torch process slows every step several times over.
"""
from __future__ import annotations

import argparse
import time

from vitviz.data.photo_sets import photo_statistics
from vitviz.models.registry import load_model
from vitviz.rendering import objectives
from vitviz.rendering.loop import optimise
from vitviz.rendering.presets import DEFAULT_PRESET, get_preset

# The time-to-picture bench's 8 units (bench/time_to_picture.py, docs/performance.md).
UNITS = (300, 414, 771, 865, 1197, 1265, 1354, 1481)


def seconds_per_step(model, layer: str, units: tuple[int, ...], preset, steps: int) -> float:
    """Wall seconds per step of one run of `units` (one picture each, seed 0)."""
    start = time.perf_counter()
    for _ in optimise(model, objectives.neuron(layer, units), [0] * len(units), preset,
                      steps=steps, record_every=0):
        pass
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--layer", default="encoder.layers.encoder_layer_6.mlp.1")
    parser.add_argument("--units", type=int, nargs="+", default=list(UNITS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                        help="pictures per step: the first N of the units")
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each, in turns")
    args = parser.parse_args()

    model = load_model(args.model)
    start = time.perf_counter()
    photo_statistics(model, args.layer)
    print(f"photo pass ({args.layer}, once per layer and process): "
          f"{time.perf_counter() - start:.1f} s")
    default = get_preset(DEFAULT_PRESET)
    presets = {"default": default,
               "without the photo prior": default.with_overrides(exemplar_stats=0.0,
                                                                 priors_yield=False)}
    for batch in args.batches:
        units = tuple(args.units[:batch])
        for preset in presets.values():  # warm-up, untimed
            seconds_per_step(model, args.layer, units, preset, 2)
        best = dict.fromkeys(presets, float("inf"))
        for _ in range(args.rounds):
            for name, preset in presets.items():
                best[name] = min(best[name], seconds_per_step(model, args.layer, units, preset,
                                                              args.steps))
        ratio = best["default"] / best["without the photo prior"]
        print(f"batch {batch}: " + ", ".join(f"{name} {s:.3f} s/step" for name, s in best.items())
              + f"; the default takes {ratio:.2f}x")


if __name__ == "__main__":
    main()
