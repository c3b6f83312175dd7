"""The moving target over many units: the three-way split of the gain, and frozen against live.

    python bench/moving_target.py split  --blocks 6 9 --units 4 --steps 48
    python bench/moving_target.py frozen --blocks 6 --units 6 --steps 48

`split`: per unit (one seed), the gain split into content alone (new tokens, starting
attention), context alone (starting tokens, new attention) and their interaction, for `naive`
and `robust` (vitviz.analysis.moving_target). `frozen`: the same units optimised with attention held at
the start and live, two seeds each: activation reached, robust activation, and cross-seed
specificity and identification in MobileNetV2's space. docs/moving-target.md's tables come
from here. Units are drawn with a fixed seed per layer.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

import numpy as np
import torch

from vitviz.analysis.moving_target import block_parts
from vitviz.models.layers import find_layer
from vitviz.models.registry import load_model
from vitviz.quality import metrics
from vitviz.rendering import objectives
from vitviz.store.runs import RunRequest, compute_result

PRESETS = ("naive", "robust")


def draw(model, layer: str, count: int, purpose: str) -> list[int]:
    return sorted(random.Random(f"{purpose}:{layer}").sample(
        range(find_layer(model, layer).units), count))


def three_way(parts: dict) -> dict[str, float]:
    """Content alone, context alone and interaction, as fractions of the gain."""
    total = parts["total"]
    content_alone = parts["content"]
    context_alone = 2 * parts["context_order_free"] - parts["context"]
    return {"content_alone": content_alone / total, "context_alone": context_alone / total,
            "interaction": (total - content_alone - context_alone) / total}


def split(model, layers: list[str], count: int, steps: int) -> list[dict]:
    rows = []
    for layer in layers:
        units = draw(model, layer, count, "split")
        for preset in PRESETS:
            result = compute_result(RunRequest(
                model.registry_name, objectives.neuron(layer, tuple(units)).spec(),
                (0,) * len(units), preset, {"steps": steps}, moving_target=True), model)
            for item, unit in enumerate(units):
                parts = result.metrics["moving_target"][item]
                blocks = block_parts(result.context, item)
                rows.append({"layer": layer, "unit": unit, "preset": preset,
                             "end": parts["start"] + parts["total"], **parts,
                             **three_way(parts), "blocks": blocks})
    for preset in PRESETS:
        alive = [r for r in rows if r["preset"] == preset and r["end"] > 0.01]
        shares = {k: statistics.median(r[k] for r in alive) if alive else float("nan")
                  for k in ("content_alone", "context_alone", "interaction")}
        print(f"{preset:7} alive {len(alive)} of {sum(r['preset'] == preset for r in rows)}; "
              "medians over the living: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return rows


def frozen(model, layers: list[str], count: int, steps: int,
           pictures: str | None = None) -> list[dict]:
    rows, seeds, columns = [], (0, 1), {}
    for layer in layers:
        units = draw(model, layer, count, "frozen")
        batch_units = tuple(u for u in units for _ in seeds)
        for preset in PRESETS:
            for frozen_context in (False, True):
                result = compute_result(RunRequest(
                    model.registry_name, objectives.neuron(layer, batch_units).spec(),
                    tuple(s for _ in units for s in seeds), preset, {"steps": steps},
                    frozen_context=frozen_context), model)
                columns.setdefault((preset, frozen_context), []).extend(result.images)
                images = torch.from_numpy(np.stack(result.images)).permute(0, 3, 1, 2) / 255
                figures = metrics.specificity(
                    metrics.embed(images.float()).reshape(len(units), len(seeds), -1))
                robust = metrics.robust_figures(model, layer, list(batch_units), images.float())
                row = {"layer": layer, "preset": preset, "frozen": frozen_context,
                       "reached": statistics.median(c[-1] for c in result.activation),
                       "robust_activation": statistics.median(robust["robust_activation"]),
                       **{k: figures[k] for k in ("same_unit", "different_unit", "specificity",
                                                  "identification")}}
                rows.append(row)
                print(f"{layer} {preset:7} {'frozen' if frozen_context else 'live  '} "
                      + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                  if isinstance(v, float)))
    if pictures:
        save_grid(columns, pictures)
    return rows


def save_grid(columns: dict, path: str, tile: int = 128) -> None:
    """One row per (unit, seed) in layer order; columns naive live, naive frozen, robust live,
    robust frozen."""
    from PIL import Image

    order = [(p, f) for p in PRESETS for f in (False, True)]
    count = len(columns[order[0]])
    grid = Image.new("RGB", (tile * len(order), tile * count), "white")
    for column, key in enumerate(order):
        for row, image in enumerate(columns[key]):
            grid.paste(Image.fromarray(image).resize((tile, tile), Image.LANCZOS),
                       (column * tile, row * tile))
    grid.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=("split", "frozen"))
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[6, 9])
    parser.add_argument("--units", type=int, default=4, help="per block")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--pictures", help="frozen: a grid PNG of every picture (rows: unit and "
                        "seed; columns: naive live, naive frozen, robust live, robust frozen)")
    args = parser.parse_args()
    model = load_model(args.model)
    layers = [f"encoder.layers.encoder_layer_{block}.mlp.1" for block in args.blocks]
    if args.measure == "split":
        rows = split(model, layers, args.units, args.steps)
    else:
        rows = frozen(model, layers, args.units, args.steps, args.pictures)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
