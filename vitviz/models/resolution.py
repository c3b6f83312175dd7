"""A ViT run on a smaller input than it was built for: the cheap, coarse early steps of a picture.

A ViT's input size is fixed only by its position table, one entry per patch of the grid it was
built for. DINOv2 itself resizes that table to the input's patch grid on every call (bicubic),
and torchvision's `interpolate_embeddings` does the same when fine-tuning at another size; here
the table is resized the same way for the length of a forward pass. A 112-px input to a 224-px
ViT has a quarter of the patches, so a forward and backward pass costs about a quarter as much:
early steps, which only shape a picture's large structure, can afford the coarser view.

Only a model that declares itself `resizable` is resized: a torchvision VisionTransformer
(every built-in ViT and the DINOv2 conversion are one); anything else runs at its own size. For DINOv2 the table resized here is the
converted 16x16 one, not the original 37x37 grid it was itself resized from, so a coarse pass is
close to, not exactly, what the original graph computes at that size.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.models.layers import layer_table
from vitviz.models.loaded import LoadedModel


def coarse_size(model: LoadedModel, scale: float) -> int:
    """`scale` times the model's input size, rounded to whole patches (at least one)."""
    patch = model.module.patch_size
    return max(1, round(model.preprocessing.size * scale / patch)) * patch


def resized_patch_grid(patches: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, side*side, D] position entries of a square patch grid -> [1, grid*grid, D].

    Bicubic with a = -0.75, half-pixel centres, border clamping and no antialiasing: torch's
    kernel is the one of the ONNX Resize node with which DINOv2's graph resizes its table."""
    side = round(patches.shape[1] ** 0.5)
    square = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False,
                            antialias=False)
    return resized.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)


def _resized_table(table: torch.Tensor, prefix: int, grid: int) -> torch.Tensor:
    """[1, prefix + g*g, D] position table -> the same for a grid x grid patch layout."""
    return torch.cat([table[:, :prefix], resized_patch_grid(table[:, prefix:], grid)], dim=1)


@contextmanager
def at_input_size(model: LoadedModel, size: int) -> Iterator[None]:
    """Within the block, the model takes `size`-px inputs (its own size: nothing changes)."""
    vit = model.module
    if size == model.preprocessing.size:
        yield
        return
    if not model.resizable:
        raise ValueError(f"{model.name} runs only at {model.preprocessing.size} px")
    # Layer shapes are those at the model's own size: the table's dry run must not see this one.
    layer_table(model)
    encoder, original_size = vit.encoder, vit.image_size
    original = encoder.pos_embedding
    with torch.no_grad():
        table = _resized_table(original, original.shape[1] - (original_size // vit.patch_size) ** 2,
                               size // vit.patch_size)
    vit.image_size = size
    encoder.pos_embedding = nn.Parameter(table, requires_grad=False)
    try:
        yield
    finally:
        vit.image_size = original_size
        encoder.pos_embedding = original
