"""An offline set of real photos, from files that registry packages ship.

Used for dataset examples (which photos and crops drive a unit), for the natural-image
spectrum of MACO, and as the natural scale of the quality figures. Sources, each optional:
scikit-image's bundled data, scikit-learn's sample images, matplotlib's sample data, and
Debian's `opencv-doc` examples (an allow-list of its real photos: the folder also holds
logos, charts, calibration boards and text).
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

SOURCES = ("skimage", "sklearn", "matplotlib", "opencv")

# Photographs only (no renders, paintings, scans of text, or test charts); grey ones are real
# photos too and are converted to RGB.
SKIMAGE_FILES = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "camera.png", "coins.png",
)
SKLEARN_FILES = ("china.jpg", "flower.jpg")
MATPLOTLIB_FILES = ("grace_hopper.jpg",)
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
# Of opencv-doc's near-duplicate pairs (aloeL/R, leuvenA/B, graf1/3 ...) one photo is kept.
OPENCV_FILES = (
    "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg",
    "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg", "licenseplate_motion.jpg",
    "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg",
)

INSTALL_HINT = ("pip install scikit-image scikit-learn matplotlib (all in requirements.txt) "
                "and, on Debian, apt-get install opencv-doc")


class PhotosUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Photo:
    name: str  # e.g. "skimage/astronaut"
    source: str  # package and version, e.g. "scikit-image 0.26.0"
    image: Image.Image  # RGB


def _package_dir(module: str) -> Path | None:
    # find_spec locates a package's files without importing it (importing sklearn is slow).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return distribution


def _source_files(source: str) -> tuple[str, list[Path]]:
    """(provenance, files) of one source; files that are not installed are left out."""
    if source == "opencv":
        return "Debian opencv-doc", [OPENCV_DIR / name for name in OPENCV_FILES]
    module, distribution, subdir, names = {
        "skimage": ("skimage", "scikit-image", "data", SKIMAGE_FILES),
        "sklearn": ("sklearn", "scikit-learn", "datasets/images", SKLEARN_FILES),
        "matplotlib": ("matplotlib", "matplotlib", "mpl-data/sample_data", MATPLOTLIB_FILES),
    }[source]
    root = _package_dir(module)
    return _version(distribution), [root / subdir / name for name in names] if root else []


def available_sources() -> dict[str, int]:
    """Number of photos each source has on this machine."""
    return {source: sum(path.is_file() for path in _source_files(source)[1]) for source in SOURCES}


@functools.lru_cache(maxsize=4)
def _load(sources: tuple[str, ...]) -> tuple[Photo, ...]:
    photos = []
    for source in sources:
        provenance, files = _source_files(source)
        for path in files:
            if path.is_file():
                image = Image.open(path).convert("RGB")
                photos.append(Photo(f"{source}/{path.stem}", provenance, image))
    return tuple(sorted(photos, key=lambda photo: photo.name))


def load_photos(sources: Iterable[str] | None = None) -> list[Photo]:
    """The photos of `sources` (default: all) that are installed, sorted by name."""
    chosen = tuple(SOURCES if sources is None else sources)
    unknown = set(chosen) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown photo sources {sorted(unknown)}: use {SOURCES}")
    photos = list(_load(chosen))
    if not photos:
        raise PhotosUnavailable(f"No photos found in {chosen or 'no sources'}. {INSTALL_HINT}.")
    return photos


def photo_tensor(photos: Iterable[Photo], size: int) -> torch.Tensor:
    """[N, 3, size, size] in [0, 1]: shorter side resized to `size`, then the centre square."""
    tensors = []
    for photo in photos:
        image = photo.image
        scale = size / min(image.size)
        resized = image.resize((max(size, round(image.width * scale)),
                                max(size, round(image.height * scale))), Image.Resampling.BICUBIC)
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        square = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32)
        tensors.append(torch.from_numpy(square).permute(2, 0, 1) / 255)
    return torch.stack(tensors)
