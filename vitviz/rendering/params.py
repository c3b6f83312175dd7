"""Image parameterisations: the tensors the optimiser changes, and how they become RGB images.

Each item of a batch is initialised from its own seeded generator, so item i of a batch starts
exactly where a solo run with the same seed starts.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import nn

from vitviz.common.device_constants import constant
from vitviz.errors import UserError

# Square root of the colour covariance of natural images (ImageNet), as published with Lucid:
# optimising in this decorrelated space keeps colour channels from fighting each other.
_COLOUR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
_COLOUR_SQRT = (_COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()).tolist()


def _seeded(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt)


def _stack_seeded(seeds: Sequence[int], shape: tuple[int, ...], draw) -> torch.Tensor:
    return torch.stack([draw(shape, _seeded(seed, 1)) for seed in seeds])


def recorrelate(image: torch.Tensor) -> torch.Tensor:
    """Decorrelated-colour tensor [B, 3, H, W] -> correlated RGB (before the squashing)."""
    matrix = constant(_COLOUR_SQRT, image.device, image.dtype)
    return torch.einsum("bchw,dc->bdhw", image, matrix)


class ImageParam(nn.Module):
    """Base: `forward()` gives [B, 3, H, W] images in [0, 1]."""

    def after_step(self) -> None:
        """Projection after each optimiser step (pixel images are clamped to [0, 1])."""


class PixelImage(ImageParam):
    """Raw pixels, started from uniform noise as in the seed blog post; clamped to [0, 1]."""

    def __init__(self, seeds: Sequence[int], size: int):
        super().__init__()
        start = _stack_seeded(seeds, (3, size, size), lambda s, g: torch.rand(s, generator=g))
        self.pixels = nn.Parameter(start)

    def forward(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def after_step(self) -> None:
        # Projected gradient ascent: the image the network sees is always a valid image.
        self.pixels.clamp_(0, 1)


def _frequencies(size: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


class FourierImage(ImageParam):
    """Fourier coefficients scaled by 1/frequency^decay, decorrelated colour, sigmoid.

    The 1/f scaling equalises how fast each frequency can change, which stops the optimiser from
    filling the image with the high-frequency patterns that a pixel basis favours. Frequencies
    below `floor` cycles per image share its scale: with a steep decay the image's few lowest
    frequencies (its mean colour and a blob or two) would otherwise outrun everything else and
    saturate whole regions to black, white or a pure colour.
    """

    def __init__(self, seeds: Sequence[int], size: int, decay: float = 1.0, floor: float = 1.0,
                 init_sd: float = 0.01):
        super().__init__()
        self.size = size
        freqs = _frequencies(size)
        self.register_buffer("scale", 1.0 / freqs.clamp(min=floor / size) ** decay)
        shape = (3, size, size // 2 + 1, 2)
        self.spectrum = nn.Parameter(
            _stack_seeded(seeds, shape, lambda s, g: torch.randn(s, generator=g) * init_sd)
        )

    def forward(self) -> torch.Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(coefficients, s=(self.size, self.size), norm="ortho")
        # The /4 keeps the pre-sigmoid values in the sigmoid's responsive range at the start.
        return torch.sigmoid(recorrelate(image / 4))

    @torch.no_grad()
    def start_at(self, colours: torch.Tensor) -> None:
        """Move each image's mean to a colour ([B, 3] in [0, 1]; vitviz.rendering.plain_start),
        its noise kept. Colours are held inside [0.02, 0.98]: at 0 or 1 the sigmoid's slope is
        nil and the picture could not leave them."""
        colours = colours.to(self.spectrum.device, torch.float32).clamp(0.02, 0.98)
        logits = torch.log(colours / (1 - colours))
        unmix = torch.linalg.inv(constant(_COLOUR_SQRT, colours.device, torch.float32))
        # The mean is the zero-frequency coefficient, scaled by 1/size under the ortho norm.
        mean = 4 * logits @ unmix.T
        self.spectrum[:, :, 0, 0, 0] += mean * self.size / self.scale[0, 0]


class MacoImage(ImageParam):
    """MACO (Fel et al. 2023): Fourier magnitude fixed to natural images', only phase optimised.

    Holding the magnitude keeps the image's energy spread like a photo's at every step, so the
    optimiser can only move structure around, never add high-frequency energy.
    """

    def __init__(self, seeds: Sequence[int], size: int, magnitude: torch.Tensor | None = None):
        super().__init__()
        self.size = size
        if magnitude is None:
            magnitude = natural_magnitude(size)
        self.register_buffer("magnitude", magnitude)
        shape = (3, size, size // 2 + 1)
        self.phase = nn.Parameter(
            _stack_seeded(seeds, shape, lambda s, g: torch.randn(s, generator=g))
        )

    def forward(self) -> torch.Tensor:
        # Standardising the phase each step keeps its scale fixed, as the method prescribes.
        phase = (self.phase - self.phase.mean(dim=(1, 2, 3), keepdim=True)) / (
            self.phase.std(dim=(1, 2, 3), keepdim=True) + 1e-5
        )
        spectrum = torch.polar(self.magnitude.expand_as(phase), phase)
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        image = image - image.mean(dim=(2, 3), keepdim=True)
        image = image / (image.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return torch.sigmoid(recorrelate(image))


@functools.lru_cache(maxsize=8)
def natural_magnitude(size: int) -> torch.Tensor:
    """Mean Fourier magnitude of the offline photo set, per decorrelated channel: [3, size, size//2+1].

    Falls back to a 1/f spectrum (the average natural-image law) when no photos are installed.
    """
    try:
        from vitviz.data.photos import load_photos, photo_tensor

        photos = photo_tensor(load_photos(), size)
    except Exception:  # the photo sources are optional; the 1/f law is a faithful stand-in
        freqs = _frequencies(size).clamp(min=1.0 / size)
        magnitude = 1.0 / freqs
        return (magnitude / magnitude.mean()).expand(3, -1, -1).clone()
    inverse = torch.linalg.inv(torch.tensor(_COLOUR_SQRT))
    decorrelated = torch.einsum("nchw,dc->ndhw", photos - photos.mean(dim=(2, 3), keepdim=True), inverse)
    spectrum = torch.fft.rfft2(decorrelated, norm="ortho").abs().mean(dim=0)
    return spectrum / spectrum.mean()


PARAMETERISATIONS = {"pixel": PixelImage, "fourier": FourierImage, "maco": MacoImage}
# The settings a preset may give each parameterisation, with the range each must lie in.
SETTINGS: dict[str, dict[str, tuple[float, float]]] = {
    "pixel": {},
    "fourier": {"decay": (0.0, 4.0), "floor": (1.0, 4096.0), "init_sd": (1e-6, 10.0)},
    "maco": {},
}


def param_problems(name: str, settings: dict) -> list[str]:
    """What is wrong with a parameterisation and its settings, found before anything is built."""
    if name not in PARAMETERISATIONS:
        return [f"parameterisation '{name}' is unknown: use one of {sorted(PARAMETERISATIONS)}"]
    allowed = SETTINGS[name]
    problems = []
    for key, value in settings.items():
        if key not in allowed:
            known = f"use {sorted(allowed)}" if allowed else "it takes none"
            problems.append(f"the {name} image has no setting '{key}' ({known})")
            continue
        low, high = allowed[key]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and low <= value <= high):
            problems.append(f"the {name} image's {key} must be a number from {low:g} to "
                            f"{high:g} (got {value!r})")
    return problems


def build_param(name: str, seeds: Sequence[int], size: int, **kwargs) -> ImageParam:
    problems = param_problems(name, kwargs)
    if problems:
        raise UserError("; ".join(problems) + ".")
    return PARAMETERISATIONS[name](list(seeds), size, **kwargs)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference of neighbouring pixels: [B]."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy

