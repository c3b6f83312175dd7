"""Speed benchmark (not a test): optimisation steps per second against batch size, and the same
visualisation with torch-lucent's render_vis on the same model, steps and image size.

    python bench/speed.py                      # dinov2_vits14 (offline), CPU or CUDA
    python bench/speed.py --model vit_b_16 --batches 1 8 32 64 --autocast   # GPU figures

torch-lucent is optional (requirements-bench.txt); without it that part is skipped.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from vitviz import objectives
from vitviz.layers import default_layer
from vitviz.models import default_model, load_model
from vitviz.optimise import optimise
from vitviz.presets import get_preset

# Dense bf16 peak of the GPUs this was measured on, for the fraction-of-peak column.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_vitviz(model, layer, unit, preset, batch, steps, autocast=False) -> float:
    """Seconds per optimisation step for `batch` images (after two warm-up steps)."""
    objective = objectives.neuron(layer, unit)
    seeds = list(range(batch))
    records = optimise(model, objective, seeds, preset, steps=steps + 2, record_every=0,
                       autocast=autocast)
    next(records), next(records)
    synchronise(model.device)
    start = time.perf_counter()
    for _ in range(steps):
        next(records)
    synchronise(model.device)
    return (time.perf_counter() - start) / steps


def time_lucent(model, layer, unit, steps) -> float | None:
    """Seconds per step of lucent's render_vis with its default Fourier image and transforms."""
    try:
        from lucent.optvis import objectives as lucent_objectives, param, render, transform
    except ModuleNotFoundError as error:
        if error.name != "lucent":  # installed but broken: say so instead of skipping quietly
            raise SystemExit(f"torch-lucent is installed but cannot be imported ({error}); "
                             "run `make bench`, which installs what it imports") from error
        return None
    size = model.preprocessing.size
    # Lucent names modules with '_' joins and indexes axis 1 (tokens on a ViT): give it the
    # same neuron objective vitviz uses, written against its hook API.
    lucent_layer = layer.replace(".", "_")
    objective = lucent_objectives.Objective(
        lambda hooks: -hooks(lucent_layer)[:, 1:, unit].mean()
    )
    start = time.perf_counter()
    render.render_vis(
        model.module, objective, lambda: param.image(size), thresholds=(steps,),
        transforms=transform.standard_transforms, fixed_image_size=size, show_image=False,
        progress=False, verbose=False,
    )
    synchronise(model.device)
    return (time.perf_counter() - start) / steps


def model_flops_per_image(model, layer) -> float:
    """Forward FLOPs of one image up to the target layer, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from vitviz.layers import activations

    size = model.preprocessing.size
    x = torch.zeros(1, 3, size, size, device=model.device)
    with FlopCounterMode(display=False) as counter:
        activations(model, x, [layer])
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--unit", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--presets", nargs="+", default=["naive", "robust"])
    parser.add_argument("--autocast", action="store_true", help="also time bf16 autocast (CUDA)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    model = load_model(args.model or default_model()[0])
    layer = args.layer or default_layer(model)
    device = model.device
    print(f"# {model.label} on {device} ({torch.get_num_threads()} CPU threads), layer {layer}, "
          f"unit {args.unit}, {args.steps} timed steps")
    flops = model_flops_per_image(model, layer)
    figures = {"model": model.label, "device": str(device), "layer": layer, "rows": []}
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in gpu_name), None)
    modes = [False, True] if args.autocast and device.type == "cuda" else [False]
    print(f"{'preset':8} {'batch':>5} {'dtype':>5} {'s/step':>8} {'steps/s':>8} {'img-steps/s':>11} {'TFLOP/s':>8}")
    for preset in args.presets:
        for autocast in modes:
            for batch in args.batches:
                seconds = time_vitviz(model, layer, args.unit, preset, batch, args.steps, autocast)
                rows = batch * get_preset(preset).ensemble
                # forward + backward is about 3x the forward FLOPs; the clean images only go forward.
                tflops = flops * (3 * batch * get_preset(preset).ensemble + batch) / seconds / 1e12
                row = {"preset": preset, "batch": batch, "bf16": autocast, "s_per_step": seconds,
                       "rows": rows, "tflops": tflops,
                       "fraction_of_bf16_peak": tflops / peak if peak else None}
                figures["rows"].append(row)
                print(f"{preset:8} {batch:5d} {'bf16' if autocast else 'fp32':>5} {seconds:8.3f} "
                      f"{1 / seconds:8.2f} {batch / seconds:11.2f} {tflops:8.3f}"
                      + (f"  ({tflops / peak:.1%} of bf16 peak)" if peak else ""))
    lucent_seconds = time_lucent(model, layer, args.unit, args.steps)
    ours = time_vitviz(model, layer, args.unit, "lucent", 1, args.steps)
    figures["lucent_s_per_step"] = lucent_seconds
    figures["vitviz_lucent_preset_s_per_step"] = ours
    if lucent_seconds is None:
        print("torch-lucent is not installed (pip install -r requirements-bench.txt): no comparison")
    else:
        print(f"same visualisation (Fourier 1/f image, Lucent's transforms, Adam 0.05, batch 1, "
              f"{args.steps} steps): torch-lucent render_vis {lucent_seconds:.3f} s/step, vitviz "
              f"{ours:.3f} s/step: vitviz takes {ours / lucent_seconds:.2f}x the time of Lucent")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
