"""Dataset examples: the photos, crops and patches of the offline photo set that drive a unit.

A whole layer is measured at once (every unit of it, on every photo and crop), so that the
examples of any unit of that layer, and its maximum over the photo set, cost nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from vitviz.models.drive import capture_drives
from vitviz.models.forward import activations
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.tokens import unit_values

# Crops: a 3x3 grid of half-size windows per photo, overlapping by a quarter of the photo.
CROP_FRACTION = 0.5
CROP_GRID = 3

# Called as progress(done, total) while batches are measured.
BatchProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Example:
    photo: str
    activation: float
    box: tuple[float, float, float, float]  # (left, top, right, bottom) as fractions of the photo
    kind: str  # "photo", "crop" or "patch"


@dataclass
class LayerActivations:
    """Per-unit activations of one layer on the photo set: [views, units] plus what each view is."""

    layer: str
    tokens: str
    views: list[tuple[int, tuple[float, float, float, float], str]]  # (photo index, box, kind)
    values: torch.Tensor  # [views, units], reduced over tokens / space
    patch_values: torch.Tensor | None  # [photos, patches, units] for token layers
    photo_names: list[str]
    # [views, units] of the units' drive (vitviz.models.drive) where it can order views differently
    # from `values` (a GELU or ReLU layer), else None; `patch_drive` likewise for the patches.
    drive: torch.Tensor | None = None
    patch_drive: torch.Tensor | None = None

    @property
    def ranking(self) -> torch.Tensor:
        """[views, units] whose order is the order in which views drive each unit."""
        return self.values if self.drive is None else self.drive

    @property
    def label(self) -> str:
        """The set the examples come from, shown beside every figure computed from it."""
        return f"built-in photos ({len(self.photo_names)} and their crops)"

    def image(self, name: str):
        """The photo called `name`, decoded (shared with every other reader of the set)."""
        from vitviz.data.photos import load_photos

        return next(photo.image for photo in load_photos() if photo.name == name)

    def nbytes(self) -> int:
        tensors = (self.values, self.drive, self.patch_values, self.patch_drive)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def unit_max(self, unit: int) -> float:
        """The unit's largest activation over photos and crops: the scale for 'how strong'."""
        return float(self.values[:, unit].max())

    def unit_min(self, unit: int) -> float:
        """The unit's smallest activation over photos and crops: the scale for minimising."""
        return float(self.values[:, unit].min())

    def view_order(self, unit: int, bottom: bool = False) -> list[int]:
        """Every view, from the one that drives the unit most (least): the one order that the
        judge's tasks and the accentuated exemplars' ranks share."""
        return self.ranking[:, unit].argsort(descending=not bottom, stable=True).tolist()

    def ranked(self, unit: int, bottom: bool = False) -> list[tuple[int, int]]:
        """(view, photo index) of every view in `view_order` (vitviz.data.references)."""
        return [(view, self.views[view][0]) for view in self.view_order(unit, bottom)]

    def extreme_views(self, unit: int, count: int, bottom: bool = False) -> list[Example]:
        """The unit's `count` strongest (weakest) views, photos and crops alike, by its drive."""
        return [self._example(row, float(self.values[row, unit]))
                for row in self.view_order(unit, bottom)[:count]]

    def top(self, unit: int, k: int = 8) -> dict[str, list[Example]]:
        """The unit's k strongest photos, crops and patch tokens, in the order of its drive,
        with their values."""
        result = {}
        for kind in ("photo", "crop"):
            rows = [i for i, view in enumerate(self.views) if view[2] == kind]
            order = self.ranking[rows, unit].argsort(descending=True)[:k].tolist()
            result[kind] = [self._example(rows[i], float(self.values[rows[i], unit])) for i in order]
        if self.patch_values is not None:
            result["patch"] = self._top_patches(unit, k)
        return result

    def _example(self, row: int, value: float) -> Example:
        photo, box, kind = self.views[row]
        return Example(self.photo_names[photo], value, box, kind)

    def _top_patches(self, unit: int, k: int) -> list[Example]:
        values = self.patch_values[:, :, unit]
        ranking = values if self.patch_drive is None else self.patch_drive[:, :, unit]
        side = int(values.shape[1] ** 0.5)
        order = ranking.flatten().topk(min(k, values.numel())).indices
        found = []
        for value, index in zip(values.flatten()[order].tolist(), order.tolist()):
            photo, patch = divmod(index, values.shape[1])
            row, col = divmod(patch, side)
            found.append(Example(self.photo_names[photo], value,
                                 (col / side, row / side, (col + 1) / side, (row + 1) / side),
                                 "patch"))
        return found


def _square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def photo_views(photos: Sequence, size: int) -> tuple[torch.Tensor, list]:
    """Each photo's centre square and its grid of crops, resized to `size`: ([N, 3, size, size], views)."""
    tensors, views = [], []
    step = (1 - CROP_FRACTION) / (CROP_GRID - 1)
    boxes = [(0.0, 0.0, 1.0, 1.0, "photo")] + [
        (col * step, row * step, col * step + CROP_FRACTION, row * step + CROP_FRACTION, "crop")
        for row in range(CROP_GRID) for col in range(CROP_GRID)
    ]
    for index, photo in enumerate(photos):
        square = _square(photo.image)
        side = square.width
        for left, top, right, bottom, kind in boxes:
            crop = square.crop((round(left * side), round(top * side), round(right * side),
                                round(bottom * side)))
            resized = crop.resize((size, size), Image.Resampling.BICUBIC)
            tensors.append(torch.from_numpy(np.asarray(resized.convert("RGB")).copy()).permute(2, 0, 1))
            views.append((index, (left, top, right, bottom), kind))
    return torch.stack(tensors).float() / 255, views


@torch.no_grad()
def measure_layer(
    model: LoadedModel,
    layer: str,
    photos: Sequence,
    tokens: str | int = "patch",
    batch_size: int = 32,
    progress: BatchProgress | None = None,
) -> LayerActivations:
    """Activations of every unit of `layer` on every photo and crop, in batches."""
    find_layer(model, layer)  # an unknown layer: the error that lists close matches, first
    images, views = photo_views(photos, model.preprocessing.size)
    values, patches, drives, patch_drives = [], [], [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(model.device)
        with capture_drives(model.module, [layer]) as captured:
            act = activations(model, model.normalise(batch), [layer])[layer].float()
        drive = captured[layer][-1] if layer in captured else None
        values.append(unit_values(act, tokens, model.prefix_tokens).cpu())
        if drive is not None:
            drives.append(unit_values(drive, tokens, model.prefix_tokens).cpu())
        if act.dim() == 3:
            photo_rows = [i for i in range(len(batch)) if views[start + i][2] == "photo"]
            patches += [act[i, model.prefix_tokens:].cpu() for i in photo_rows]
            if drive is not None:
                patch_drives += [drive[i, model.prefix_tokens:].cpu() for i in photo_rows]
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    return LayerActivations(
        layer=layer,
        tokens=str(tokens),
        views=views,
        values=torch.cat(values),
        patch_values=torch.stack(patches) if patches else None,
        photo_names=[photo.name for photo in photos],
        drive=torch.cat(drives) if drives else None,
        patch_drive=torch.stack(patch_drives) if patch_drives else None,
    )


def crop_image(photo_image: Image.Image, box: tuple[float, float, float, float], size: int = 160,
               context: float = 0.0) -> Image.Image:
    """The region `box` of a photo's centre square (grown by `context` on each side), resized."""
    square = _square(photo_image)
    side = square.width
    left, top, right, bottom = box
    left, top = max(0.0, left - context), max(0.0, top - context)
    right, bottom = min(1.0, right + context), min(1.0, bottom + context)
    region = square.crop((round(left * side), round(top * side), round(right * side), round(bottom * side)))
    return region.resize((size, size), Image.Resampling.BICUBIC)


def view_tensor(examples, view, size: int) -> torch.Tensor:
    """A view (whole photo or crop) of `examples`' photos as an image [3, size, size] in [0, 1]."""
    picture = crop_image(examples.image(view.photo), view.box, size)
    return torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1).float() / 255

