"""Model files: a network saved with `torch.export`, with what vitviz needs to feed it.

A `.pt2` archive written by `save_exported` carries the exported program and, beside it, a
`vitviz.json` with the input side, the normalisation and the number of prefix tokens, so
`--model path/to/model.pt2` (CLI) or a `.pt2` entry in $VITVIZ_MODELS (dashboard) runs it with no
Python code of the user's.

TorchScript files are refused with the way out: a loaded ScriptModule raises NotImplementedError
on `register_forward_hook`, so none of its hidden layers could be read, and `torch.jit` is
deprecated in favour of `torch.export`. An exported program, unflattened, keeps the module tree
and its names, and its modules take hooks and pass gradients to the image.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vitviz.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelError
from vitviz.models.registry import wrap

METADATA = "vitviz.json"
SUFFIX = ".pt2"
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript")


def save_exported(
    module: nn.Module,
    path: str | Path,
    *,
    size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    prefix_tokens: int = 0,
    architecture: str | None = None,
) -> Path:
    """Export `module` (eval mode, any batch size) to `path` (.pt2) with its vitviz declaration.

    The arguments are `wrap`'s: what the images must look like and how many non-patch tokens
    lead a token layer's output.
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ModelError(f"an exported model file ends in {SUFFIX} (got {path.name}).")
    module = module.eval()
    example = torch.randn(2, 3, size, size)
    program = torch.export.export(module, (example,),
                                  dynamic_shapes=({0: torch.export.Dim.AUTO},))
    declaration = {"size": size, "mean": list(mean), "std": list(std),
                   "prefix_tokens": prefix_tokens, "architecture": architecture}
    torch.export.save(program, path, extra_files={METADATA: json.dumps(declaration)})
    return path


def is_model_file(reference: str) -> bool:
    return Path(reference).suffix in (SUFFIX, *TORCHSCRIPT_SUFFIXES)


def load_exported(path: str | Path, name: str | None = None) -> LoadedModel:
    """A `.pt2` file written by `save_exported`, as a model known by `name` (default: its stem)."""
    path = Path(path).expanduser()
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        raise ModelError(
            f"{path.name}: TorchScript files cannot be visualised (a loaded ScriptModule takes no "
            "forward hooks, so its layers cannot be read). Save the model with "
            "vitviz.save_exported(module, 'model.pt2', size=..., prefix_tokens=...), or wrap the "
            "module in a Python file: --model file.py:factory.")
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist.")
    extra = {METADATA: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as error:  # a damaged or foreign file: say which, not a traceback
        raise ModelError(f"{path} is not a torch.export archive ({type(error).__name__}: "
                         f"{error}).") from error
    if not extra[METADATA]:
        raise ModelError(f"{path} does not say how to feed the model (no {METADATA} inside): "
                         "save it with vitviz.save_exported(module, path, size=..., "
                         "prefix_tokens=...).")
    declaration = json.loads(extra[METADATA])
    _check_dynamic_batch(program, path)
    module = torch.export.unflatten(program)
    return wrap(module, name or path.stem, size=declaration["size"],
                mean=tuple(declaration["mean"]), std=tuple(declaration["std"]),
                prefix_tokens=declaration["prefix_tokens"],
                architecture=declaration.get("architecture"))


def _check_dynamic_batch(program, path: Path) -> None:
    """The optimiser feeds seeds x augmented copies at once: a batch fixed at export fails later,
    deep inside the program; say it now."""
    inputs = [node for node in program.graph.nodes if node.op == "placeholder"
              and node.name in program.graph_signature.user_inputs]
    batch = inputs[0].meta["val"].shape[0] if inputs else None
    if isinstance(batch, int):
        raise ModelError(f"{path} was exported for batches of exactly {batch} images; vitviz runs "
                         "several at once. Export with a dynamic batch: vitviz.save_exported does.")
