"""Forward hooks that capture layer outputs, and stop the forward pass once they have them."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn


class _StopForward(Exception):
    """Raised inside a hook to skip the layers after the last target: they cannot change it."""


def output_tensor(output) -> torch.Tensor | None:
    """The tensor a module produced; attention modules return (output, weights)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def capture(
    module: nn.Module, layer_names: Iterable[str], stop_early: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Collect the outputs of `layer_names` during forward passes inside the block.

    With `stop_early`, the forward pass ends as soon as every layer has fired once. Only use it
    when each target module runs once per forward (a ReLU reused in a ResNet block does not).
    """
    names = list(dict.fromkeys(layer_names))
    store: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            store[name] = output_tensor(output)
            if stop_early and len(store) == len(names):
                raise _StopForward

        return hook

    # get_submodule walks one path; building the whole name table here cost every step.
    handles = [module.get_submodule(name).register_forward_hook(hook_for(name)) for name in names]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def run_and_capture(
    module: nn.Module, inputs: torch.Tensor, layer_names: Iterable[str], stop_early: bool = False
) -> dict[str, torch.Tensor]:
    """One forward pass of `inputs`; returns the captured outputs by layer name."""
    with capture(module, layer_names, stop_early) as store:
        try:
            module(inputs)
        except _StopForward:
            pass
    return dict(store)
