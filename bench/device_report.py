"""The quality report on a lent GPU machine that has no network (issue 7's 128-step figures).

Such a machine lacks the weight packages, the photos and diskcache, and takes at most 64 MiB of
files along. Two steps:

    python bench/device_report.py bundle .gpu          # here: echo /.gpu/ >> .git/info/exclude
    python3 bench/device_report.py run .gpu $OUT --units random:16 --steps 128 \\
        --variants robust ghiasi maco lucent naive     # there, carrying .gpu

`bundle` writes the offline models' weights as fp16 (dinov2_vits14 43 MB, MobileNetV2 7 MB),
the built-in photos and the wheels of `WHEELS`. `run` installs nothing: put the wheels on the
path first (`pip install --no-index --no-deps --target /tmp/site .gpu/*.whl`, then
PYTHONPATH=/tmp/site:$PWD). It points the loaders at the bundle, runs the report's comparison
(`vitviz.surveys.report.compare`) and writes each variant's figures to OUT/partial.json as soon as
they exist (a lease can end mid-run), then OUT/report.json and a grid of the pictures. A cold
process takes about 75 s per preset at 64 units and 128 steps on an H200.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch

from vitviz.data import photos as data
from vitviz.models import registry as models
from vitviz.models.zoo import dinov2, efficientnet_lite
from vitviz.quality import judge
from vitviz.rendering.presets import DEFAULT_PRESET, PRESETS
from vitviz.store.cache import ResultCache
from vitviz.surveys import report

WHEELS = ("diskcache",)  # what vitviz needs that the device image lacks
DINOV2, MOBILENET = "dinov2_fp16.pt", "mobilenet_fp16.pt"
JUDGE = "{}.pt"  # a judge's weights file, as its package ships it
# The default with its spectrum's floor taken away (docs/quality.md's "no floor" rows).
VARIANTS = {"no floor": (DEFAULT_PRESET, {"param_kwargs": {"decay": 1.5}})}


def _half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def bundle(folder: Path, wheels: bool = True) -> None:
    """Everything the report needs that a machine without network lacks, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    converted = models.load_model("dinov2_vits14", "cpu").module.state_dict()
    torch.save(_half(converted), folder / DINOV2)
    mobilenet = models.load_model("mobilenet_v2", "cpu").module.state_dict()
    torch.save(_half(mobilenet), folder / MOBILENET)
    for name in efficientnet_lite.VARIANTS:
        shutil.copy(models._efficientnet_lite_file(name), folder / JUDGE.format(name))
    for name in data.SOURCES:
        target = folder / "photos" / name
        target.mkdir(parents=True, exist_ok=True)
        for path in data._present_files(name):
            shutil.copy(path, target / path.name)
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp",
             "--platform", "manylinux2014_x86_64", "-d", str(folder),
             *(f"{name}=={version(name)}" for name in WHEELS)], check=True)


def use_bundle(folder: Path) -> None:
    """Point vitviz's loaders at a bundle: the offline models' weights and the photos."""
    folder = folder.resolve()

    def build_dinov2():
        model = dinov2.build_architecture()
        model.load_state_dict(torch.load(folder / DINOV2, map_location="cpu", weights_only=True))
        return model.eval(), {"file": f"{DINOV2} (fp16, carried)"}

    dinov2.build_dinov2_vits14 = build_dinov2
    models._dinov2_file = lambda: folder / DINOV2
    models._mobilenet_file = lambda: folder / MOBILENET
    models._efficientnet_lite_file = lambda name: folder / JUDGE.format(name)
    for name, source in list(data._SOURCES.items()):
        data._SOURCES[name] = data._Source(source.package, str(folder / "photos" / name),
                                           source.files)


def _dumping(out: Path):
    """report.preset_figures that also writes each variant's figures once they exist."""
    own, done = report.preset_figures, []

    def figures(*args, **kwargs):
        found = own(*args, **kwargs)
        done.append({k: v for k, v in found.items() if k != "per_image"})
        (out / "partial.json").write_text(json.dumps(done, indent=1))
        return found

    return figures


def run(folder: Path, out: Path, units: str, steps: int, variants: list[str],
        blocks: list[int], units_per_run: int) -> dict:
    use_bundle(folder)
    out.mkdir(parents=True, exist_ok=True)
    # As in docs/quality.md's earlier GPU tables: presets that run fp32 take TF32 matmuls.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    report.preset_figures = _dumping(out)
    start = time.time()
    model = models.load_model("dinov2_vits14")
    layers = [f"encoder.layers.encoder_layer_{b}.mlp.1" for b in blocks]
    chosen = report.layer_units(model, layers, units, 0)
    table = {v: (VARIANTS[v][0], {**VARIANTS[v][1], "steps": steps}) if v in VARIANTS
             else (v, {"steps": steps}) for v in variants}
    judge_name = judge.independent_judge(model.registry_name)
    found = report.compare(model, chosen, table, [0, 1], ResultCache(out / "cache"), judge_name,
                           units_per_run)
    summary = {
        "judge": report.judge_summary(judge_name, model.registry_name),
        "model": model.label, "layers": chosen, "seeds": [0, 1], "steps": steps,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "photo_set": next(iter(found.layers.values()))["photo_set"],
        "presets": found.figures, "exemplars": found.exemplars,
        "unit_max_over_photos": {k: v["unit_max"] for k, v in found.layers.items()},
        "seconds": round(time.time() - start),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    rows = [(layer, unit) for layer, units in chosen.items() for unit in units]
    report.grid_image(found.pictures, rows, 112).save(out / "grid.jpg", quality=85)
    shutil.rmtree(out / "cache")  # a lease returns only a few files
    report.print_table(summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("bundle", help="here: write the bundle")
    make.add_argument("folder", type=Path)
    make.add_argument("--no-wheels", action="store_true")
    there = sub.add_parser("run", help="there: the report's figures from the bundle")
    there.add_argument("folder", type=Path)
    there.add_argument("out", type=Path)
    there.add_argument("--units", default="random:16", help="per block, as in the report")
    there.add_argument("--steps", type=int, default=128)
    there.add_argument("--blocks", type=int, nargs="+", default=[2, 5, 8, 11])
    there.add_argument("--variants", nargs="+", default=[DEFAULT_PRESET, "ghiasi"],
                       help=f"presets ({', '.join(PRESETS)}) or {', '.join(VARIANTS)}")
    there.add_argument("--units-per-run", type=int, default=32)
    args = parser.parse_args()
    if args.command == "bundle":
        bundle(args.folder, not args.no_wheels)
        return
    unknown = [v for v in args.variants if v not in PRESETS and v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: use presets or {list(VARIANTS)}")
    run(args.folder, args.out, args.units, args.steps, args.variants, args.blocks,
        args.units_per_run)


if __name__ == "__main__":
    main()
