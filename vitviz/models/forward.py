"""The library's one forward pass: a model's input through the network, the layers asked for
captured, with the fast paths and the early stop applied the same way for every caller."""
from __future__ import annotations

import torch

from vitviz.models.fast.attention import fast_self_attention
from vitviz.models.fast.compiled import compile_errors, compiled_blocks, give_up
from vitviz.models.fast.patches import fast_patch_embedding
from vitviz.models.hooks import run_and_capture
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel


def stops_early(model: LoadedModel, layer_names) -> bool:
    """Whether a forward pass may end as soon as these layers have fired.

    The one rule for it: only when each runs once per pass. A module called several times
    (torchvision ResNet's shared ReLU) is read at its last call, which stopping would skip.
    """
    return all(find_layer(model, name).calls == 1 for name in layer_names)


class Activations(dict):
    """Layer name -> captured output, plus the model's count of tokens before the patches.

    Objectives and metrics read `prefix_tokens` from here, so they never assume a layout.
    """

    def __init__(self, outputs: dict[str, torch.Tensor], prefix_tokens: int):
        super().__init__(outputs)
        self.prefix_tokens = prefix_tokens


def activations(model: LoadedModel, inputs: torch.Tensor, layer_names) -> Activations:
    """One forward pass of the model's input tensor `inputs`, capturing `layer_names`.

    The one way the library reads layers: it applies the early-stop rule, takes the fast
    self-attention path (`fast_attention`) and patch embedding (`fast_patches`), runs the
    blocks before the target compiled when the model asks for it (`compiled`), and attaches
    what the model declares about its tokens.
    """
    names = list(layer_names)
    stop = stops_early(model, names)
    with fast_self_attention(model.module), fast_patch_embedding(model.module):
        try:
            with compiled_blocks(model, names):
                outputs = run_and_capture(model.module, inputs, names, stop)
        except compile_errors() as error:
            give_up(error)
            outputs = run_and_capture(model.module, inputs, names, stop)
    return Activations(outputs, model.prefix_tokens)
