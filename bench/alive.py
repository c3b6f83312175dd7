"""Do units light up? The fraction of units whose picture ends above their maximum over the photos.

    python bench/alive.py                       # dinov2_vits14, 12 units of mlp.1 in blocks 2, 5, 8, 11
    python bench/alive.py --presets robust naive --steps 128 --per-block 12
    python bench/alive.py --blocks 0 1 --per-block 16 --knobs '{"exemplar_stats": 0}'

Units are drawn with a fixed seed per layer (the report's `random:N`), one seed each, so the
figure is over many units rather than one that happens to work. A unit is *alive* when its
clean activation at the end is above its maximum over the photos and their crops; *robustly
alive* when the mean over shifted and zoomed views is (what pixel noise cannot fake); *past a
plain colour* when that mean is above the unit's value on a flat field in the colour of one of
its strongest photo views (vitviz.quality.plain_colour: the units a colour drives as hard as
any photo show there). Results go through the result cache, so the report and the dashboard
reuse them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vitviz.data.examples import measure_layer
from vitviz.data.photos import load_photos
from vitviz.models.layers import find_layer
from vitviz.models.registry import load_model
from vitviz.quality import metrics
from vitviz.quality.plain_colour import plain_colour_values
from vitviz.store.cache import ResultCache
from vitviz.surveys.report import choose_units, run_preset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 5, 8, 11])
    parser.add_argument("--per-block", type=int, default=12)
    parser.add_argument("--presets", nargs="+", default=["robust"])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--knobs", type=json.loads, default={}, metavar="JSON",
                        help="preset knobs for every preset, as the sweep's --accentuated-knobs")
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    model = load_model(args.model, "cpu" if not torch.cuda.is_available() else None)
    cache = ResultCache(args.cache) if args.cache else ResultCache()
    photos = load_photos()
    figures = {}
    for preset in args.presets:
        alive, robust_alive, past_plain, rows = 0, 0, 0, []
        for block in args.blocks:
            layer = f"encoder.layers.encoder_layer_{block}.mlp.1"
            units = choose_units(f"random:{args.per_block}", find_layer(model, layer).units,
                                 layer, 0)
            stats = measure_layer(model, layer, photos)
            images, reached = run_preset(model, layer, units, [0], preset,
                                         {**args.knobs, "steps": args.steps}, cache)
            flat = torch.from_numpy(images[:, 0]).permute(0, 3, 1, 2).float() / 255
            robust = metrics.robust_figures(model, layer, units, flat)["robust_activation"]
            plain = plain_colour_values(model, layer, units, stats)
            for unit, end, held, colour in zip(units, reached, robust, plain):
                top = stats.unit_max(unit)
                alive += end > top
                robust_alive += held > top
                past_plain += held > colour
                rows.append({"block": block, "unit": unit, "end": end, "robust": held,
                             "photo_max": top, "plain_colour": colour})
        count = len(rows)
        passed = {block: [row["end"] > row["photo_max"] for row in rows if row["block"] == block]
                  for block in args.blocks}
        by_block = {block: sum(flags) for block, flags in passed.items()}
        figures[preset] = {"alive": alive / count, "robustly_alive": robust_alive / count,
                           "past_plain_colour": past_plain / count,
                           "units": count, "steps": args.steps, "photos": len(photos),
                           "knobs": args.knobs, "alive_by_block": by_block, "per_unit": rows}
        blocks = ", ".join(f"block {block} {sum(flags)}/{len(flags)}"
                           for block, flags in passed.items())
        print(f"{preset}{' ' + json.dumps(args.knobs) if args.knobs else ''}: {alive}/{count} "
              f"units alive ({alive / count:.0%}; {blocks}), {robust_alive}/{count} robustly "
              f"({robust_alive / count:.0%}), {past_plain}/{count} past a plain colour, "
              f"{args.steps} steps, {len(photos)} photos", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
