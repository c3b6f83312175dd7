"""Speed benchmark (not a test): how fast a step is, against the machine's limit and the anchors.

    python bench/speed.py                      # dinov2_vits14 (offline), CPU or CUDA
    python bench/speed.py --model vit_b_16:random --batches 1 8 32 64 \
        --variants fp32 bf16 bf16+compile --no-contenders             # GPU figures

1. **Peak**: a dense matmul's GFLOP/s on this machine, in this process, fp32 and bf16: the limit
   that "fraction of peak" refers to.
2. **Batches**: seconds per step of vitviz's presets against the batch size, with the FLOPs of a
   step (counted by torch.utils.flop_counter over one real step), images x steps per second,
   achieved GFLOP/s and the fraction of peak, in fp32 and in bf16 (a bf16 copy of the network:
   the preset knob `precision`), eager and with compiled blocks (`+compile`, vitviz.models.fast.compiled), and with
   PyTorch's fused attention kernel where vitviz takes another (`+fused`). On a GPU the
   fraction is also given of the card's datasheet bf16 peak, read by its name.
3. **Contenders**, on the same model, layer, unit and image size: vitviz's default, its `lucent`
   preset, torch-lucent's `render_vis` and Horama's `maco` (PyPI `horama`), each when installed.
   Every contender gets the same warm-up steps before the same number of timed steps, and the
   contenders take turns over several rounds, so drift in the machine's speed hits them all;
   the median and the spread over rounds are printed, then ratios as "A takes N x the time of B".
   Lucent and Horama have no step API: a contender's step time is (time of warm-up + timed
   steps - time of warm-up steps alone) / timed steps, which also cancels their set-up.

Run it alone: on 2 cores a second torch process slows every step several times over.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vitviz.models.fast import attention as fast_attention
from vitviz.models.fast import patches as fast_patches
from vitviz.models.layers import default_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.registry import default_model, load_model
from vitviz.rendering import objectives
from vitviz.rendering.loop import optimise
from vitviz.rendering.precision import native_bf16
from vitviz.rendering.presets import DEFAULT_PRESET, Preset, get_preset

# Seconds for `steps` steps after `warmup` untimed ones.
Timer = Callable[[int, int], float]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Dense bf16 tensor-core TFLOP/s (no sparsity) from NVIDIA's datasheets, by a fragment of the
# name torch.cuda.get_device_name gives; the first fragment found wins, so the more specific
# names come first. SXM and PCIe parts of one chip differ (H100 SXM 989, PCIe 756).
DATASHEET_BF16_TFLOPS = (
    ("GH200", 989.0), ("H200 NVL", 835.0), ("H200", 989.0),
    ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0),  # "H100 80GB HBM3" is SXM
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0),
    ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
)


def datasheet_bf16_peak(device_name: str) -> float | None:
    """The card's datasheet dense bf16 peak in GFLOP/s, or None for a card not listed."""
    for fragment, tflops in DATASHEET_BF16_TFLOPS:
        if fragment in device_name:
            return tflops * 1000
    return None


def matmul_peak(device: torch.device, dtype: torch.dtype, side: int | None = None,
                repeats: int = 10) -> float:
    """GFLOP/s of a dense side x side matmul (random values), the best of `repeats` after one
    warm-up; the side is large enough to fill the machine (8192 on a GPU, 2048 on a CPU)."""
    side = side or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        a @ b
        synchronise(device)
        best = min(best, time.perf_counter() - start)
    return 2 * side ** 3 / best / 1e9


# "+fused": attention through PyTorch's fused kernel even where vitviz takes another path (bf16
# on the CPU, vitviz.models.fast.attention.attend); "+conv": the patch embedding as the module's own
# convolution instead of vitviz.models.fast.patches' matrix product. Each measures what its path is worth.
VARIANTS = ("fp32", "bf16", "fp32+compile", "bf16+compile", "bf16+fused", "fp32+conv",
            "bf16+conv", "bf16+compile+conv")


def variant_model(model: LoadedModel, variant: str) -> tuple[LoadedModel, str]:
    """The model to time and the precision for a variant such as 'bf16+compile'."""
    precision, *flags = variant.split("+")
    return dataclasses.replace(model, compile="compile" in flags), precision


@contextlib.contextmanager
def _replaced(module, name: str, value):
    own = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, own)


def variant_paths(variant: str):
    """Within the block, a variant's "+fused" attention takes PyTorch's fused kernel and its
    "+conv" patch embedding the convolution."""
    flags = variant.split("+")[1:]
    stack = contextlib.ExitStack()
    if "fused" in flags:
        stack.enter_context(_replaced(
            fast_attention, "attend", lambda q, k, v, dropout_p=0.0:
            torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)))
    if "conv" in flags:
        stack.enter_context(_replaced(
            fast_patches, "patches_as_matmul", lambda x, weight, bias:
            torch.nn.functional.conv2d(x, weight, bias, stride=weight.shape[-2:])))
    return stack


def vitviz_timer(model: LoadedModel, layer: str, unit: int, preset: "str | Preset", batch: int = 1,
                 variant: str = "fp32", coarse: bool = False) -> Timer:
    """Steps of one kind: every one at full size, or (`coarse`) every one a coarse step."""
    objective = objectives.neuron(layer, unit)
    model, precision = variant_model(model, variant)
    settings = (get_preset(preset) if isinstance(preset, str) else preset).with_overrides(
        precision=precision, coarse_steps=1.0 if coarse else 0.0)

    def timed(warmup: int, steps: int) -> float:
        with variant_paths(variant):
            records = optimise(model, objective, list(range(batch)), settings,
                               steps=warmup + steps, record_every=0)
            for _ in range(warmup):
                next(records)
            synchronise(model.device)
            start = time.perf_counter()
            for _ in range(steps):
                next(records)
            synchronise(model.device)
            return time.perf_counter() - start

    return timed


def run_seconds(steps: int, coarse_steps: int, full_step_s: float, coarse_step_s: float) -> float:
    """Seconds of a run's first `steps` steps when its first `coarse_steps` are coarse ones."""
    return min(steps, coarse_steps) * coarse_step_s + max(0, steps - coarse_steps) * full_step_s


def full_pass_seconds(model: LoadedModel, repeats: int = 5) -> float:
    """Median seconds of one forward and backward pass of the whole model, one image, fp32: the
    unit the default picture's time is counted in."""
    x = torch.rand(1, 3, model.preprocessing.size, model.preprocessing.size,
                   device=model.device, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        synchronise(model.device)
        start = time.perf_counter()
        model.module(model.normalise(x)).float().sum().backward()
        synchronise(model.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def vitviz_step_flops(model: LoadedModel, layer: str, unit: int, preset: str,
                      batch: int = 1) -> float:
    """FLOPs of one real step: augmented forward and backward plus the clean forward."""
    records = optimise(model, objectives.neuron(layer, unit), list(range(batch)), preset,
                       steps=2, record_every=0)
    next(records)
    with FlopCounterMode(display=False) as counter:
        next(records)
    return float(counter.get_total_flops())


def print_top_kernels(model: LoadedModel, layer: str, unit: int, preset: str, batch: int,
                      variant: str, steps: int = 3, top: int = 20) -> None:
    """Where a step's time goes: the kernels with the most self time over a few warm steps."""
    from torch.profiler import ProfilerActivity, profile

    records = vitviz_timer(model, layer, unit, preset, batch, variant)
    records(2, 0)  # compile and warm up outside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if model.device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        records(0, steps)
    sort = "self_cuda_time_total" if model.device.type == "cuda" else "self_cpu_time_total"
    print(f"top kernels, {preset} batch {batch} {variant}, {steps} steps:")
    print(profiler.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=60))


def difference_timer(render: Callable[[int], None], device: torch.device) -> Timer:
    """A timer for a tool that only runs whole optimisations of n steps (set-up included)."""
    def run(n: int) -> float:
        synchronise(device)
        start = time.perf_counter()
        render(n)
        synchronise(device)
        return time.perf_counter() - start

    return lambda warmup, steps: run(warmup + steps) - run(warmup)


def lucent_objective(model: LoadedModel, layer: str, unit: int):
    """vitviz's neuron objective (patch tokens averaged) written against Lucent's hook API,
    which names modules with '_' joins and would index axis 1 (tokens on a ViT)."""
    from lucent.optvis import objectives as lucent_objectives

    return lucent_objectives.Objective(
        lambda hooks: -hooks(layer.replace(".", "_"))[:, model.prefix_tokens:, unit].mean())


def lucent_render(model: LoadedModel, layer: str, unit: int) -> Callable[[int], None] | None:
    """torch-lucent's render_vis with its defaults (Fourier image, standard transforms, Adam
    0.05) on the same neuron (patch tokens averaged), or None when lucent is not installed."""
    try:
        from lucent.optvis import param, render, transform
    except ModuleNotFoundError as error:
        if error.name != "lucent":  # installed but broken: say so instead of skipping quietly
            raise SystemExit(f"torch-lucent is installed but cannot be imported ({error}); "
                             "run `make bench`, which installs what it imports") from error
        return None
    size = model.preprocessing.size
    objective = lucent_objective(model, layer, unit)

    def render_steps(n: int) -> None:
        render.render_vis(model.module, objective, lambda: param.image(size), thresholds=(n,),
                          transforms=transform.standard_transforms, fixed_image_size=size,
                          show_image=False, progress=False, verbose=False)

    return render_steps


@contextlib.contextmanager
def horama_spectrum():
    """Horama downloads ImageNet's magnitude spectrum (decorrelated colour, [3, 512, 257]) into
    the working directory on first use; there is no network here, so give it the same statistic
    of vitviz's built-in photos (what vitviz's `maco` preset uses), in a directory of its own."""
    from vitviz.rendering.params import natural_magnitude

    before = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        np.save("spectrum_decorrelated.npy", natural_magnitude(512).numpy().astype("float32"))
        try:
            yield
        finally:
            os.chdir(before)


def horama_objective(model: LoadedModel, layer: str, unit: int) -> Callable:
    """vitviz's neuron objective on Horama's crops (images in [0, 1])."""
    from vitviz.models.forward import activations

    def objective(images: torch.Tensor) -> torch.Tensor:
        acts = activations(model, model.normalise(images), [layer])[layer]
        return acts[:, model.prefix_tokens:, unit].mean()

    return objective


def horama_render(model: LoadedModel, layer: str, unit: int) -> Callable[[int], None] | None:
    """Horama's `maco` with its defaults (1280-px canvas, 6 crops, NAdam 1.0) on the same neuron,
    or None when horama is not installed."""
    try:
        import horama
    except ModuleNotFoundError as error:
        if error.name != "horama":
            raise SystemExit(f"horama is installed but cannot be imported ({error}); run "
                             "`make bench`, which installs what it imports") from error
        return None
    objective = horama_objective(model, layer, unit)

    def render_steps(n: int) -> None:
        with horama_spectrum(), open(os.devnull, "w") as quiet, \
                contextlib.redirect_stderr(quiet):  # its tqdm bar
            horama.maco(objective, total_steps=n, model_input_size=model.preprocessing.size,
                        values_range=(0.0, 1.0), device=str(model.device))

    return render_steps


def interleaved(timers: dict[str, Timer], warmup: int, steps: int, rounds: int
                ) -> dict[str, list[float]]:
    """Seconds per step of every contender in every round; the contenders take turns."""
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            seconds[name].append(timer(warmup, steps) / steps)
    return seconds


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--layer", default=None)
    parser.add_argument("--unit", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps, every contender")
    parser.add_argument("--steps", type=int, default=32, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--presets", nargs="+", default=["naive", DEFAULT_PRESET])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["fp32", "bf16"],
                        help="precision, and +compile for compiled blocks")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no new batch row after this many seconds (a lease's limit)")
    parser.add_argument("--no-contenders", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print the top kernels of every variant at the first batch size")
    parser.add_argument("--json", help="write the figures to this file (after every row)")
    args = parser.parse_args()
    began = time.perf_counter()

    model = load_model(args.model or default_model()[0])
    layer = args.layer or default_layer(model)
    device = model.device
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"# {model.label} on {where}, layer {layer}, unit {args.unit}; {args.warmup} warm-up "
          f"and {args.steps} timed steps per round, {args.rounds} rounds; torch {torch.__version__}")
    # Without native bf16 a CPU emulates it at about 1/200 of the fp32 rate (a 2048 matmul took
    # 62 s on an AMD EPYC without AVX-512): a small matmul measures that rate in a second.
    peaks = {"fp32": matmul_peak(device, torch.float32),
             "bf16": matmul_peak(device, torch.bfloat16,
                                 None if native_bf16(device) else 256)}
    datasheet = datasheet_bf16_peak(where) if device.type == "cuda" else None
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s"
          + (f"; datasheet bf16 {datasheet:.0f} GFLOP/s" if datasheet else ""))
    full_pass = full_pass_seconds(model)
    print(f"one forward and backward pass of the whole model, 1 image, fp32: {full_pass:.3f} s")
    figures: dict = {"model": model.label, "device": where, "torch": torch.__version__,
                     "layer": layer, "unit": args.unit, "peak_gflops": peaks,
                     "datasheet_bf16_gflops": datasheet, "full_pass_s": full_pass,
                     "batches": [], "contenders": {}}

    if args.batches:
        print(f"{'preset':8} {'batch':>5} {'variant':>12} {'s/step (spread)':>24} "
              f"{'img*step/s':>10} {'GFLOP/step':>10} {'GFLOP/s':>8} {'of peak':>7}"
              + (f" {'of sheet bf16':>13}" if datasheet else ""))
    for preset in args.presets:
        for batch in args.batches:
            if args.budget_s and time.perf_counter() - began > args.budget_s:
                print(f"budget of {args.budget_s:.0f} s spent: rows from {preset} batch {batch} "
                      "on left out")
                break
            try:
                flops = vitviz_step_flops(model, layer, args.unit, preset, batch)
            except torch.cuda.OutOfMemoryError:
                print(f"{preset:8} {batch:5d} out of GPU memory; larger batches left out")
                break
            for variant in args.variants:
                timer = vitviz_timer(model, layer, args.unit, preset, batch, variant)
                seconds = interleaved({"x": timer}, args.warmup, args.steps, args.rounds)["x"]
                median = statistics.median(seconds)
                achieved = flops / median / 1e9
                precision = variant_model(model, variant)[1]
                row = {"preset": preset, "batch": batch, "variant": variant,
                       "s_per_step": seconds, "images_steps_per_s": batch / median,
                       "gflop_per_step": flops / 1e9, "gflops": achieved,
                       "fraction_of_peak": achieved / peaks[precision],
                       "fraction_of_datasheet_bf16": achieved / datasheet if datasheet else None}
                figures["batches"].append(row)
                _write(args.json, figures)
                print(f"{preset:8} {batch:5d} {variant:>12} {spread(seconds):>24} "
                      f"{batch / median:10.1f} {flops / 1e9:10.1f} {achieved:8.1f} "
                      f"{achieved / peaks[precision]:7.1%}"
                      + (f" {achieved / datasheet:13.1%}" if datasheet else ""), flush=True)
    if args.profile and args.batches:
        for variant in args.variants:
            print_top_kernels(model, layer, args.unit, args.presets[-1], args.batches[0], variant)

    if args.no_contenders:
        return _write(args.json, figures)
    timers: dict[str, Timer] = {
        f"vitviz {DEFAULT_PRESET} fp32": vitviz_timer(model, layer, args.unit, DEFAULT_PRESET),
        f"vitviz {DEFAULT_PRESET} bf16": vitviz_timer(model, layer, args.unit, DEFAULT_PRESET,
                                                   variant="bf16"),
        "vitviz lucent preset": vitviz_timer(model, layer, args.unit, "lucent"),
    }
    for name, render in (("torch-lucent render_vis", lucent_render(model, layer, args.unit)),
                         ("horama maco", horama_render(model, layer, args.unit))):
        if render is None:
            print(f"{name}: not installed (make bench installs it); left out")
        else:
            timers[name] = difference_timer(render, device)
    seconds = interleaved(timers, args.warmup, args.steps, args.rounds)
    figures["contenders"] = seconds
    print("\nseconds per step, batch 1, median (min-max) over rounds:")
    steps = get_preset(DEFAULT_PRESET).steps
    for name, values in seconds.items():
        print(f"  {name:28} {spread(values)}")
    for name in [n for n in seconds if n.startswith("vitviz " + DEFAULT_PRESET)]:
        picture = statistics.median(seconds[name]) * steps
        figures.setdefault("default_picture_s", {})[name] = picture
        print(f"  {name}: a {steps}-step picture takes {picture:.0f} s, the time of "
              f"{picture / full_pass:.0f} full forward and backward passes")
    names = list(seconds)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"  {a} takes {medians[a] / medians[b]:.2f} x the time of {b}")
    _write(args.json, figures)


def _write(path: str | None, figures: dict) -> None:
    if path:
        with open(path, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
