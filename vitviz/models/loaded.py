"""A loaded model: a frozen network plus what it declares about itself (how to feed it, how
to label its results, its token layout), and the errors loading can end in."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from vitviz.common.device_constants import constant
from vitviz.errors import UserError
from vitviz.models.attention_kinds import MULTIHEAD, AttentionKind

RANDOM_SUFFIX = ":random"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ViT module names, and a CNN's top-level feature maps (`features.N` for those
# that keep their blocks in `features`): the layouts vitviz knows without being told.
VIT_ROLES = (
    (r"encoder\.layers\.encoder_layer_\d+\.mlp\.1", "mlp_hidden", None),
    (r"encoder\.layers\.encoder_layer_\d+", "block_output", None),
    (r"encoder\.layers\.encoder_layer_\d+\.self_attention", "attention_output", None),
)
CNN_ROLES = ((r"[^.]+", "block_output", "map"), (r"features\.[^.]+", "block_output", "map"))
# Models that exist only untrained: their results are labelled random without the suffix.
RANDOM_ONLY = ("tiny_vit", "tiny_cnn")
# Weights of a model from a library's cache (timm, Hugging Face, OpenCLIP) are read from the
# local cache only, unless the operator sets this to 1; the dashboard applies it to every model.
ALLOW_DOWNLOAD_ENV = "VITVIZ_ALLOW_DOWNLOAD"


def downloads_allowed(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ALLOW_DOWNLOAD_ENV) == "1"


class ModelError(UserError):
    """A model name or its weights cannot be used; the message says how to fix it."""


class WeightsUnavailable(ModelError):
    """Pretrained weights are neither cached locally nor downloadable."""


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int


@dataclass
class LoadedModel:
    """A frozen network plus everything needed to feed it and to label its results."""

    name: str
    module: nn.Module
    preprocessing: Preprocessing
    weights_id: str
    architecture: str  # "vit" or "cnn"
    class_names: list[str] | None = None
    logits_layer: str | None = None
    provenance: dict = field(default_factory=dict)
    random_init: bool = False
    # Tokens before the patch tokens in a token layer's output (class token, registers):
    # declared by the model, read by objectives and metrics, never guessed from a layer.
    prefix_tokens: int = 0
    # How it runs, not what it computes (like the device, not part of a result's key): run the
    # transformer blocks before a target through torch.compile (vitviz.models.fast.compiled).
    compile: bool = False
    # Which layers play which part (`layers.ROLE_LABELS`): (name pattern, role, layout or None)
    # in order, the first full match wins. None: the layout vitviz knows for the architecture,
    # torchvision's ViT names (DINOv2 is converted to them) or a CNN's top-level feature maps.
    layer_roles: tuple[tuple[str, str, str | None], ...] | None = None
    # How the modules of role `attention_output` hand their queries, keys and values to vitviz,
    # which computes their maps by hand (the moving-target probe, a frozen context): torch's
    # nn.MultiheadAttention unless declared; None where vitviz cannot (such runs are refused).
    attention: AttentionKind | None = MULTIHEAD
    # Whether a pass may run on a smaller input with its position table resized
    # (`resolution.at_input_size`): a torchvision VisionTransformer. None: found from the module.
    resizable: bool | None = None

    def __post_init__(self):
        if self.layer_roles is None:
            self.layer_roles = VIT_ROLES if self.architecture == "vit" else CNN_ROLES
        if self.resizable is None:
            from torchvision.models import VisionTransformer  # only once a network is loaded

            self.resizable = isinstance(self.module, VisionTransformer)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: fp32, or bf16 for a run's bf16 copy (vitviz.rendering.precision)."""
        return next(self.module.parameters()).dtype

    @property
    def registry_name(self) -> str:
        """The name `load_model` takes to give this model back, e.g. 'vit_b_16:random'."""
        marked = self.random_init and self.name not in RANDOM_ONLY
        return self.name + RANDOM_SUFFIX if marked else self.name

    @property
    def label(self) -> str:
        tag = " [RANDOM INIT: not pretrained]" if self.random_init else ""
        return f"{self.name} ({self.weights_id}){tag}"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB images -> the tensor the network was trained on."""
        mean = constant(self.preprocessing.mean, images.device, images.dtype)
        std = constant(self.preprocessing.std, images.device, images.dtype)
        return (images - mean[:, None, None]) / std[:, None, None]

    def to_input(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """[0, 1] RGB images of any size -> the network's input: resized (antialiased) to `size`
        (the model's own input size unless given), normalised."""
        size = size or self.preprocessing.size
        images = images.to(self.device)
        if images.shape[-1] != size or images.shape[-2] != size:
            images = torch.nn.functional.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return self.normalise(images)

    def metadata(self) -> dict:
        """What every stored result says about the model that produced it."""
        return {
            "name": self.name,
            "weights": self.weights_id,
            "random_init": self.random_init,
            "architecture": self.architecture,
            "provenance": self.provenance,
            "prefix_tokens": self.prefix_tokens,
            "preprocessing": {
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
                "size": self.preprocessing.size,
            },
        }


