"""`python -m vitviz report`: presets compared on the same units, with figures noise cannot game.

For each preset, every unit runs with every seed (in chunks of units, so memory stays bounded;
items of a batch are independent, so chunking does not change any image). Then per preset:
relative activation (against the photo set), rank of the target unit in its layer, and
cross-seed consistency in MobileNetV2's feature space (see vitviz.metrics). Writes report.json,
grid.png (units x seeds x presets) and index.html to the output directory.
"""
from __future__ import annotations

import html
import math
import json
import statistics
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vitviz import metrics, objectives
from vitviz.cache import ResultCache
from vitviz.examples import measure_layer
from vitviz.models import LoadedModel, default_model, load_model
from vitviz.results import encode_png
from vitviz.runs import RunRequest, run

UNITS_PER_RUN = 4


def parse_units(text: str) -> list[int]:
    """'0-31' or '3,7,9' or '0-3,8' -> unit indices."""
    units: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            units.extend(range(int(low), int(high) + 1))
        elif part.strip():
            units.append(int(part))
    if not units:
        raise ValueError(f"no units in '{text}': use e.g. 0-31 or 3,7,9")
    return units


def run_preset(model: LoadedModel, layer: str, units: Sequence[int], seeds: Sequence[int],
               preset: str, steps: int | None, cache: ResultCache | None) -> np.ndarray:
    """Final images [units, seeds, H, W, 3] for one preset."""
    images = []
    overrides = {"steps": steps} if steps else {}
    chunks = [units[i:i + UNITS_PER_RUN] for i in range(0, len(units), UNITS_PER_RUN)]
    total = (steps or 0) * len(chunks)
    with tqdm(total=total or None, desc=preset, unit="step", file=sys.stderr) as bar:
        for chunk in chunks:
            batch_units = tuple(u for u in chunk for _ in seeds)
            batch_seeds = tuple(s for _ in chunk for s in seeds)
            request = RunRequest(model.registry_name,
                                 objectives.neuron(layer, batch_units).spec(),
                                 batch_seeds, preset, overrides)
            result, _ = run(request, cache, lambda _: model,
                            lambda record, n: bar.update(1) if record.loss is not None else None)
            images.extend(result.images)
    return np.stack(images).reshape(len(units), len(seeds), *images[0].shape)


def preset_figures(model: LoadedModel, layer: str, units: Sequence[int], images: np.ndarray,
                   unit_max: Sequence[float]) -> dict:
    n_units, n_seeds = images.shape[:2]
    flat = torch.from_numpy(images.reshape(-1, *images.shape[2:])).permute(0, 3, 1, 2).float() / 255
    unit_per_image = [u for u in units for _ in range(n_seeds)]
    max_per_image = [unit_max[i] for i in range(n_units) for _ in range(n_seeds)]
    objective = objectives.neuron(layer, tuple(unit_per_image))
    relative = metrics.relative_activation(metrics.activation(model, objective, flat), max_per_image)
    robust = metrics.relative_activation(metrics.robust_activation(model, objective, flat),
                                         max_per_image)
    ranks = metrics.unit_ranks(model, layer, unit_per_image, flat)
    embeddings = metrics.embed(flat).reshape(n_units, n_seeds, -1)
    return {
        "relative_activation_median": _finite_median(relative),
        "relative_robust_activation_median": _finite_median(robust),
        "rank_median": statistics.median(ranks),
        "rank_top1_fraction": sum(r == 1 for r in ranks) / len(ranks),
        "consistency": metrics.consistency(embeddings),
        "per_image": {"relative_activation": relative, "relative_robust_activation": robust,
                      "rank": ranks},
    }


def _finite_median(values: Sequence[float]) -> float:
    # A unit whose maximum over the photos is not positive has no relative scale (NaN): skip it.
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def grid_image(per_preset: dict[str, np.ndarray], units: Sequence[int], tile: int = 96) -> Image.Image:
    """Rows: units; columns: seeds of each preset side by side, with a gap between presets."""
    presets = list(per_preset)
    n_seeds = next(iter(per_preset.values())).shape[1]
    gap = tile // 4
    width = len(presets) * n_seeds * tile + (len(presets) - 1) * gap
    canvas = Image.new("RGB", (width, len(units) * tile), "white")
    for p, name in enumerate(presets):
        for u in range(len(units)):
            for s in range(n_seeds):
                tile_image = Image.fromarray(per_preset[name][u, s]).resize((tile, tile))
                canvas.paste(tile_image, (p * (n_seeds * tile + gap) + s * tile, u * tile))
    return canvas


def write_html(out: Path, summary: dict) -> None:
    rows = []
    for name, figures in summary["presets"].items():
        c = figures["consistency"]
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{figures['relative_activation_median']:.2f}</td>"
            f"<td>{figures['relative_robust_activation_median']:.2f}</td>"
            f"<td>{figures['rank_median']:.0f}</td><td>{figures['rank_top1_fraction']:.0%}</td>"
            f"<td>{c['same_unit']:.3f}</td><td>{c.get('different_unit', float('nan')):.3f}</td>"
            f"<td>{c.get('gap', float('nan')):.3f}</td><td>{c.get('identification', float('nan')):.0%}"
            f" (chance {c.get('chance', float('nan')):.0%})</td></tr>"
        )
    config = html.escape(json.dumps({k: v for k, v in summary.items() if k != "presets"}, indent=1))
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>vitviz report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}</style>"
        f"<h1>vitviz report: {html.escape(summary['model'])} {html.escape(summary['layer'])}</h1>"
        "<table><tr><th>preset</th><th>activation / photo max (median)</th>"
        "<th>robust activation / photo max</th><th>rank (median)</th>"
        "<th>rank 1</th><th>same-unit sim.</th><th>different-unit sim.</th><th>gap</th>"
        "<th>identification</th></tr>" + "".join(rows) + "</table>"
        f"<p>Grid: one row per unit; columns are the seeds of {', '.join(summary['presets'])}, "
        "left to right.</p><img src='grid.png' style='max-width:100%'>"
        f"<pre>{config}</pre>"
    )


def main(args) -> int:
    model_name = args.model or default_model()[0]
    model = load_model(model_name, args.device)
    units = parse_units(args.units)
    seeds = list(range(args.seeds))
    cache = ResultCache(args.cache) if args.cache else ResultCache()
    from vitviz.data import load_photos

    photos = load_photos()
    with tqdm(total=None, desc="photo set", unit="img", file=sys.stderr) as bar:
        layer_acts = measure_layer(model, args.layer, photos,
                                   progress=lambda done, total: bar.update(done - bar.n))
    unit_max = [layer_acts.unit_max(u) for u in units]
    per_preset, figures = {}, {}
    for preset in args.presets:
        per_preset[preset] = run_preset(model, args.layer, units, seeds, preset, args.steps, cache)
        figures[preset] = preset_figures(model, args.layer, units, per_preset[preset], unit_max)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"model": model.label, "model_metadata": model.metadata(), "layer": args.layer,
               "units": units, "seeds": seeds, "steps": args.steps, "photos": len(photos),
               "unit_max_over_photos": unit_max, "presets": figures}
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    (out / "grid.png").write_bytes(encode_png(np.asarray(grid_image(per_preset, units))))
    write_html(out, summary)
    for name, f in figures.items():
        c = f["consistency"]
        print(f"{name:8} act/photo-max {f['relative_activation_median']:.2f}"
              f"  robust {f['relative_robust_activation_median']:.2f}  rank {f['rank_median']:.0f}"
              f"  same {c['same_unit']:.3f}  diff {c.get('different_unit', 0):.3f}"
              f"  ident {c.get('identification', 0):.0%} (chance {c.get('chance', 0):.0%})")
    print(out / "index.html")
    return 0
