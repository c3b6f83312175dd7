"""Throughput of the atlas and the index (not a test): units per hour, images per second, and
the index's size, with the local engine and with Ray on the same work.

    python bench/throughput.py --model tiny_vit --units 16 --images 512
    python bench/throughput.py --model dinov2_vits14 --units 4 --batch-units 4 --images 256 \\
        --engines local ray
    python bench/throughput.py --model tiny_vit --units 64 --steps 1 --batch-units 1 \\
        --images 64 --engines local ray      # Ray's coordination per unit

The atlas part visualises `--units` units of the default layer with the default preset (its
own steps unless --steps) into a fresh cache; the index part indexes `--images` synthetic
images (smooth random colour fields, 256 px PNGs, made here) into a fresh folder. Each engine
does the same work; Ray's start (`ray.init`, the actors loading the model) is timed apart and
included in its figure, since a user pays it. Run it alone: on 2 cores a second torch process
slows every step.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vitviz.data.index import build_index
from vitviz.models.layers import default_layer
from vitviz.models.registry import default_model, load_model
from vitviz.store.cache import ResultCache
from vitviz.surveys.atlas import run_atlas


def synthetic_images(folder: Path, count: int, side: int = 256) -> None:
    """Smooth random colour fields: cheap to make, decoded and resized like photos."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((side, side), Image.BICUBIC).save(folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-units", type=int, default=None, help="default: auto")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--engines", nargs="+", choices=["local", "ray"], default=["local"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()

    model = load_model(args.model or default_model()[0])
    layer = args.layer or default_layer(model)
    figures: dict = {"model": model.label, "layer": layer, "device": str(model.device),
                     "atlas": {}, "index": {}}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        photos = root / "photos"
        synthetic_images(photos, args.images)
        for engine in args.engines:
            ray_start = 0.0
            if engine == "ray":
                from vitviz.data.ray_engine import start

                began = time.perf_counter()
                start(args.workers)
                ray_start = time.perf_counter() - began
            began = time.perf_counter()
            done = list(run_atlas(model, layer, range(args.units), ResultCache(root / engine),
                                  steps=args.steps, batch_units=args.batch_units,
                                  engine=engine, workers=args.workers))
            seconds = time.perf_counter() - began + ray_start
            figures["atlas"][engine] = {"units": len(done), "seconds": seconds,
                                        "units_per_hour": len(done) / seconds * 3600,
                                        "ray_start_s": ray_start}
            print(f"atlas {engine}: {len(done)} units in {seconds:.0f} s = "
                  f"{len(done) / seconds * 3600:.0f} units/hour", flush=True)
            began = time.perf_counter()
            index, added = build_index(model, [layer], photos, root / f"index-{engine}",
                                       engine=engine, workers=args.workers)
            seconds = time.perf_counter() - began
            size = index.path.stat().st_size
            figures["index"][engine] = {"images": added, "seconds": seconds,
                                        "images_per_s": added / seconds, "bytes": size}
            print(f"index {engine}: {added} images in {seconds:.1f} s = {added / seconds:.1f} "
                  f"images/s; {size / 1e6:.2f} MB on disk", flush=True)
    if {"local", "ray"} <= set(args.engines):
        for part, key in (("atlas", "units_per_hour"), ("index", "images_per_s")):
            ratio = figures[part]["ray"][key] / figures[part]["local"][key]
            print(f"{part}: Ray with {args.workers} workers does {ratio:.2f} x the local "
                  "engine's work per second")
        # With next to no work per unit (--steps 1 --batch-units 1 on the tiny model), what
        # Ray adds to each unit is its coordination: scheduling, moving payloads and results.
        ray, local = figures["atlas"]["ray"], figures["atlas"]["local"]
        per_unit = (ray["seconds"] - ray["ray_start_s"] - local["seconds"]) / ray["units"]
        figures["atlas"]["ray_overhead_per_unit_s"] = per_unit
        print(f"atlas: Ray adds {per_unit * 1000:.0f} ms per unit after its start "
              f"({ray['ray_start_s']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
