"""What the default's photo prior costs in time (not a test): seconds per step of the default and
of the default without its exemplar-statistics prior, timed in turns on the same unit and batch
(bench/speed.py's timers: warm-up steps and the run's set-up left out), and the photo pass a
run makes first to find its unit's exemplars.

    python bench/prior_cost.py      # dinov2_vits14 block 6, a unit of the time-to-picture bench's

Run it alone: on 2 cores a second torch process slows every step several times over.
"""
from __future__ import annotations

import argparse
import time

from speed import interleaved, vitviz_timer
from vitviz.data.photo_sets import photo_statistics
from vitviz.models.registry import load_model
from vitviz.rendering.precision import resolve_precision
from vitviz.rendering.presets import DEFAULT_PRESET, get_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--layer", default="encoder.layers.encoder_layer_6.mlp.1")
    parser.add_argument("--unit", type=int, default=300)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                        help="pictures per step (seeds of the unit)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of every run")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run")
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
    arithmetic = resolve_precision(default.precision, model.device)
    for batch in args.batches:
        timers = {name: vitviz_timer(model, args.layer, args.unit, preset, batch, arithmetic)
                  for name, preset in presets.items()}
        best = {name: min(seconds) for name, seconds in
                interleaved(timers, args.warmup, args.steps, args.rounds).items()}
        ratio = best["default"] / best["without the photo prior"]
        print(f"batch {batch}: " + ", ".join(f"{name} {s:.3f} s/step" for name, s in best.items())
              + f"; the default takes {ratio:.2f}x")


if __name__ == "__main__":
    main()
