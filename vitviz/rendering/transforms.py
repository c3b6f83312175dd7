"""Differentiable, batched augmentations in plain torch.

A batch holds `n_items` images, each repeated into `rows // n_items` augmented copies (an
augmentation ensemble). Every random draw for item i comes from item i's own generator, so an
item is augmented the same way whether it runs alone or in a batch. Draws happen on the
generators' device: with generators on the GPU, nothing is drawn on the CPU and copied over
(measured on an H100: CPU-drawn noise for 64 images x 4 copies was 2/3 of a ViT-B step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from vitviz.errors import UserError


def _draw(rngs: Sequence[torch.Generator], rows: int, sample: Callable) -> torch.Tensor:
    """`sample(generator, count)` for each item's copies, concatenated in row order."""
    per_item = rows // len(rngs)
    return torch.cat([sample(generator, per_item) for generator in rngs])


def _uniform(rngs, rows, low: float, high: float, *shape: int) -> torch.Tensor:
    return _draw(rngs, rows, lambda g, n: torch.rand(n, *shape, generator=g, device=g.device)
                 * (high - low) + low)


def _integers(rngs, rows, low: int, high: int) -> torch.Tensor:
    return _draw(rngs, rows, lambda g, n: torch.randint(low, high + 1, (n,), generator=g,
                                                        device=g.device))


def _windows(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, size: int) -> torch.Tensor:
    """Row r's size x size window starting at (dy[r], dx[r]), wrapping around the edges: one
    gather for the whole batch instead of a slice per row (a kernel launch each on a GPU)."""
    rows, _, height, width = x.shape
    steps = torch.arange(size, device=x.device)
    ys = (dy.to(x.device)[:, None] + steps) % height  # [rows, size]
    xs = (dx.to(x.device)[:, None] + steps) % width
    picked = x[torch.arange(rows, device=x.device)[:, None, None], :, ys[:, :, None], xs[:, None, :]]
    return picked.permute(0, 3, 1, 2)  # advanced indices first: [rows, size, size, 3]


def _affine_grid(matrices: torch.Tensor, size: int, like: torch.Tensor) -> torch.Tensor:
    """F.affine_grid(matrices, [rows, C, size, size], align_corners=False) as broadcast sums.

    affine_grid runs a batched matrix product with an inner size of 3, which fills no matrix
    unit: 2.4 ms of a 66-ms step on an H200 at batch 64, about 1 ms a call on a 2-core CPU at
    batch 1 against 0.2 ms for these elementwise ops (equal up to rounding, 1e-6).
    """
    centres = (torch.arange(size, device=like.device, dtype=like.dtype) * 2 + 1) / size - 1
    x, y = centres[None, None, :], centres[None, :, None]
    m = matrices.to(like.device, like.dtype)[:, :, :, None, None]
    return torch.stack([m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2],
                        m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]], dim=-1)


def _affine(x: torch.Tensor, matrices: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Resample each row through its own 2x3 affine matrix (in normalised coordinates)."""
    grid = _affine_grid(matrices, size or x.shape[-1], x)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Transform:
    """`transform(x, rngs, progress)`: x is [rows, 3, H, W]; progress runs from 0 to 1."""

    def __call__(self, x: torch.Tensor, rngs: Sequence[torch.Generator], progress: float):
        raise NotImplementedError


@dataclass(frozen=True)
class Pad(Transform):
    """Reflect-pad the border so that jitter and rotation do not always cut the same edge."""

    width: int

    def __call__(self, x, rngs, progress):
        return F.pad(x, [self.width] * 4, mode="reflect")


@dataclass(frozen=True)
class Jitter(Transform):
    """Random crop smaller by `pixels` in each direction: translation without resampling."""

    pixels: int

    def __call__(self, x, rngs, progress):
        dy = _integers(rngs, x.shape[0], 0, self.pixels)
        dx = _integers(rngs, x.shape[0], 0, self.pixels)
        return _windows(x, dy, dx, x.shape[-1] - self.pixels)


@dataclass(frozen=True)
class Roll(Transform):
    """Circular shift by up to `pixels` (Ghiasi et al. 2022 use ±32 px on ViTs)."""

    pixels: int

    def __call__(self, x, rngs, progress):
        dy = _integers(rngs, x.shape[0], -self.pixels, self.pixels)
        dx = _integers(rngs, x.shape[0], -self.pixels, self.pixels)
        # Rolling by d puts pixel (i - d) at i: a window that starts at -d and wraps.
        return _windows(x, -dy, -dx, x.shape[-1])


@dataclass(frozen=True)
class RandomScale(Transform):
    """Zoom each row by a factor drawn from [low, high]."""

    low: float
    high: float

    def __call__(self, x, rngs, progress):
        scale = _uniform(rngs, x.shape[0], self.low, self.high)
        matrices = torch.zeros(x.shape[0], 2, 3, device=scale.device)
        matrices[:, 0, 0] = matrices[:, 1, 1] = 1.0 / scale
        return _affine(x, matrices)


@dataclass(frozen=True)
class RandomRotate(Transform):
    """Rotate each row by an angle drawn from ±`degrees`."""

    degrees: float

    def __call__(self, x, rngs, progress):
        angle = _uniform(rngs, x.shape[0], -self.degrees, self.degrees) * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        matrices = torch.stack(
            [torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1
        )
        return _affine(x, matrices)


@dataclass(frozen=True)
class RandomResizedCrop(Transform):
    """A square crop covering a random fraction of the area, resized to `size` (MACO's crops).

    `overhang` lets a crop reach that fraction of its side past the canvas edge (filled by
    reflection): without it, the border is seen by fewer crops than the centre and fades.
    `degrees` also turns the crop by up to that angle, in the same resampling (a separate
    rotation would resample, and blur, the crop a second time).
    """

    size: int
    min_area: float = 0.25
    max_area: float = 1.0
    overhang: float = 0.0
    degrees: float = 0.0

    def __call__(self, x, rngs, progress):
        rows = x.shape[0]
        side = _uniform(rngs, rows, self.min_area, self.max_area).sqrt()
        reach = (1 - side) + 2 * self.overhang * side
        centre_y = (_uniform(rngs, rows, 0.0, 1.0) * 2 - 1) * reach
        centre_x = (_uniform(rngs, rows, 0.0, 1.0) * 2 - 1) * reach
        matrices = torch.zeros(rows, 2, 3, device=side.device)
        if self.degrees:
            angle = _uniform(rngs, rows, -self.degrees, self.degrees) * math.pi / 180
            cos, sin = torch.cos(angle) * side, torch.sin(angle) * side
            matrices[:, 0, 0], matrices[:, 0, 1] = cos, -sin
            matrices[:, 1, 0], matrices[:, 1, 1] = sin, cos
        else:
            matrices[:, 0, 0] = matrices[:, 1, 1] = side
        matrices[:, 0, 2], matrices[:, 1, 2] = centre_x, centre_y
        return _affine(x, matrices, self.size)


@dataclass(frozen=True)
class ColourShift(Transform):
    """Per-row random colour scale and offset, so a unit cannot rely on exact colour values."""

    shift: float
    scale: float

    def __call__(self, x, rngs, progress):
        rows = x.shape[0]
        offset = _uniform(rngs, rows, -1.0, 1.0, 3) * self.shift
        gain = 1 + _uniform(rngs, rows, -1.0, 1.0, 3) * self.scale
        return x * gain.to(x)[:, :, None, None] + offset.to(x)[:, :, None, None]


@dataclass(frozen=True)
class Noise(Transform):
    """Additive Gaussian noise; with `anneal`, its strength falls linearly to zero over the run."""

    std: float
    anneal: bool = False

    def __call__(self, x, rngs, progress):
        std = self.std * (1 - progress) if self.anneal else self.std
        noise = _draw(rngs, x.shape[0], lambda g, n: torch.randn(n, *x.shape[1:], generator=g,
                                                                 device=g.device))
        return x + std * noise.to(x)


TRANSFORMS: dict[str, type[Transform]] = {
    "pad": Pad,
    "jitter": Jitter,
    "roll": Roll,
    "scale": RandomScale,
    "rotate": RandomRotate,
    "crop": RandomResizedCrop,
    "colour": ColourShift,
    "noise": Noise,
}


def build_transforms(specs: Sequence[Sequence]) -> list[Transform]:
    """[["pad", {"width": 12}], ...] -> transform objects; unknown names fail with the valid ones."""
    built = []
    for name, kwargs in specs:
        if name not in TRANSFORMS:
            raise UserError(f"transform '{name}' is unknown: use one of {sorted(TRANSFORMS)}")
        built.append(TRANSFORMS[name](**kwargs))
    return built


def augment(
    images: torch.Tensor,
    transforms: Sequence[Transform],
    rngs: Sequence[torch.Generator],
    copies: int,
    progress: float,
) -> torch.Tensor:
    """[n_items, 3, H, W] -> [n_items * copies, 3, h, w]: each item's copies, transformed."""
    x = images.repeat_interleave(copies, dim=0)
    for transform in transforms:
        x = transform(x, rngs, progress)
    return x
