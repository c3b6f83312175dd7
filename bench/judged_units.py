"""What the judge's benchmarks share: the model, the blocks' `mlp.1` units drawn as the report
draws them, the judge and the cache they read their pictures from."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vitviz.models.registry import load_model
from vitviz.quality import judge
from vitviz.store.cache import ResultCache
from vitviz.surveys import report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2])
    parser.add_argument("--units", default="random:16", help="per block, as in the report")
    parser.add_argument("--unit-seed", type=int, default=0,
                        help="draws the random units, as the report's --unit-seed")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--judge", choices=judge.JUDGES,
                        help="default: the first judge independent of --model")
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")


def open_units(args: argparse.Namespace):
    """(model, judge name, layer -> units, cache) for `add_arguments`' arguments."""
    model = load_model(args.model, "cuda" if torch.cuda.is_available() else "cpu")
    judge_name = args.judge or judge.independent_judge(model.registry_name)
    layers = [f"encoder.layers.encoder_layer_{block}.mlp.1" for block in args.blocks]
    chosen = report.layer_units(model, layers, args.units, args.unit_seed)
    return model, judge_name, chosen, ResultCache(args.cache) if args.cache else ResultCache()


def write_out(args: argparse.Namespace, model, judge_name: str, **figures) -> None:
    """The figures as JSON at --out (when given), with the model and judge they are of."""
    if args.out:
        args.out.write_text(json.dumps({"model": model.label, "judge": judge_name, **figures},
                                       indent=1))


def direction(sides) -> torch.Tensor:
    """The one direction the judge's score reads from references (E+, E-), w = mean(E+) -
    mean(E-): a task is won when its q+ - q- leans along it (`judge.score`)."""
    return sides[0].mean(dim=0) - sides[1].mean(dim=0)
