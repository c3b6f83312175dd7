"""An offline set of real photos, from files that installed packages ship.

Used for dataset examples (which photos and crops drive a unit), for the natural-image
spectrum of MACO, and as the natural scale of the quality figures. Each source is optional:
scikit-image's bundled data, scikit-learn's sample images, matplotlib's sample data, the 20
ImageNet validation photos that foolbox ships for its examples, and Debian's `opencv-doc`
examples. Every source is an explicit allow-list of file names, because the same folders also
hold logos, renders, charts, calibration boards, scans of text and microscopy, and because
reading only files already on disk keeps loading offline (calling `skimage.data.*` could
download through pooch).
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import struct
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from vitviz.errors import UserError


class PhotosUnavailable(UserError):
    """None of the photo sources is installed."""


@dataclass(frozen=True)
class Photo:
    name: str  # "<source>/<file stem>", e.g. "skimage/astronaut"
    source: str  # package and version it came from, e.g. "scikit-image 0.26.0"
    image: Image.Image  # RGB, 8 bits per channel


@dataclass(frozen=True)
class _Source:
    package: str  # what to install: a pip distribution, or a Debian package when module is None
    folder: str  # relative to the module's folder, or absolute for a Debian package
    files: tuple[str, ...]
    module: str | None = None


_SOURCES = {
    # Camera photographs only. camera, coins, brick, grass and gravel are grey and become RGB.
    # Left out: motorcycle_right (stereo twin of motorcycle_left), the telescope, microscope and
    # fundus images (hubble_deep_field, ihc, cell, retina, microaneurysms), moon (low-contrast
    # astronomy), clock_motion (almost pure blur), text and page (text), and the synthetic rest.
    "skimage": _Source("scikit-image", "data", (
        "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
        "grass.png", "gravel.png", "motorcycle_left.png", "rocket.jpg",
    ), module="skimage"),
    "sklearn": _Source("scikit-learn", "datasets/images", ("china.jpg", "flower.jpg"),
                       module="sklearn"),
    "matplotlib": _Source("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",),
                          module="matplotlib"),
    # ImageNet validation photos (19 classes: dogs, birds, insects, vehicles, objects), the
    # kind of scene the models vitviz draws learnt from. Installed without its dependencies:
    # only the files are read. Its CIFAR and MNIST thumbnails are left out (32 and 28 px).
    "foolbox": _Source("foolbox", "data", tuple(
        f"imagenet_{name}.jpg" for name in (
            "00_243", "01_559", "02_438", "03_990", "04_949", "05_853", "06_609", "07_609",
            "08_915", "09_455", "10_541", "11_630", "12_741", "13_471", "14_129", "15_99",
            "16_251", "17_22", "18_317", "19_305")), module="foolbox"),
    # 25 of the folder's 91 images. Left out: renders, cartoons and logos, charts and synthetic
    # shapes, calibration boards (left01..right14, chessboard), text (sudoku, text_*, notes),
    # a painting (starry_night), a depth map (aloeGT), tiny templates, and the second photo of
    # each near-identical pair (aero3, aloeR, basketball2, box, ela_modified, graf3, leuvenB,
    # right, rubberwhale2). Images are not gzipped: dh_compress leaves .jpg and .png alone.
    "opencv": _Source("opencv-doc", "/usr/share/doc/opencv-doc/examples/data", (
        "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "blox.jpg",
        "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png",
        "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
        "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
        "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
    )),
}
SOURCES = tuple(_SOURCES)


def _folder(source: _Source) -> Path | None:
    """Where the source's files are, or None when its package is not installed."""
    if source.module is None:
        folder = Path(source.folder)
        return folder if folder.is_dir() else None
    # find_spec locates a package without importing it: importing scikit-learn takes seconds.
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / source.folder


def _provenance(source: _Source) -> str:
    """Package name and version, so that a report can say exactly which photos it used."""
    if source.module is None:
        changelog = Path("/usr/share/doc", source.package, "changelog.Debian.gz")
        if changelog.is_file():
            # The first line reads "opencv (4.6.0+dfsg-12) unstable; urgency=medium".
            with gzip.open(changelog, "rt") as lines:
                return f"Debian {source.package} {lines.readline().split('(')[1].split(')')[0]}"
        return f"Debian {source.package}"
    try:
        return f"{source.package} {version(source.package)}"
    except PackageNotFoundError:
        return source.package


def _present_files(name: str) -> list[Path]:
    """The allow-listed files of one source that are on disk, warning about the others."""
    source = _SOURCES[name]
    folder = _folder(source)
    if folder is None:
        warnings.warn(f"photo source {name!r} skipped: {source.package} is not installed",
                      stacklevel=2)
        return []
    missing = [file for file in source.files if not (folder / file).is_file()]
    if missing:
        warnings.warn(f"photo source {name!r}: {', '.join(missing)} not found in {folder}",
                      stacklevel=2)
    return [folder / file for file in source.files if file not in missing]


def available_sources() -> dict[str, int]:
    """Number of photos each source has on this machine (0 when it is not installed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a count of 0 already says a source is missing
        return {name: len(_present_files(name)) for name in SOURCES}


def require_photos(why: str) -> None:
    """Raise PhotosUnavailable, saying `why` the photos are needed, when no source is installed."""
    if not any(available_sources().values()):
        raise PhotosUnavailable(f"{why}, and no photo source is installed: {_install_hint()}")


def photo_set_id() -> str:
    """Which photos this machine has, by source and file count ("opencv:25,skimage:8,...").

    Part of the cache key: MACO's spectrum and every photo-relative figure depend on the set,
    and the Debian source may be missing on one machine and present on another.
    """
    return ",".join(f"{name}:{count}" for name, count in sorted(available_sources().items()))


# The most pixels one image may have: PIL's own default bound (about 89.5 million pixels,
# 268 MB as RGB), checked by every read here whatever PIL's global setting is, so that a
# crafted header (a 661-byte PNG claiming 50,000 x 50,000 px) is refused before it is decoded.
MAX_PIXELS = 89_478_485

# What PIL raises for a file it cannot read: not an image, truncated, empty, damaged, a bomb.
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
               Image.DecompressionBombError)


class UnreadableImage(UserError):
    """A file that is not an image this library reads: not an image at all, truncated, empty,
    damaged, or larger than MAX_PIXELS. Readers of many files skip and count it."""


def read_rgb(path: Path, max_pixels: int | None = None) -> Image.Image:
    """The image at `path` as RGB; UnreadableImage for anything that cannot be read, and for an
    image of more than `max_pixels` (default MAX_PIXELS), refused from its header alone."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        # convert() decodes the whole file, so the handle can close; grey photos get three
        # equal channels and chicky_512's partial alpha is dropped, keeping its own colours.
        with Image.open(path) as image:
            width, height = image.size
            if not 0 < width * height <= limit:
                raise UnreadableImage(f"{path}: {width} x {height} px is not 1 to the "
                                      f"{limit:,} pixels an image may have")
            return image.convert("RGB")
    except UnreadableImage:
        raise
    except _UNREADABLE as error:
        raise UnreadableImage(f"{path} is not a readable image ({type(error).__name__}: "
                              f"{error})") from None


def readable_photos(paths: Iterable[Path]) -> tuple[list[tuple[Path, Image.Image]], list[str]]:
    """The images of `paths` that can be read, and a line for each one skipped."""
    found, skipped = [], []
    for path in paths:
        try:
            found.append((path, read_rgb(path)))
        except UnreadableImage as error:
            skipped.append(str(error))
    return found, skipped


@functools.lru_cache(maxsize=8)
def _load(names: tuple[str, ...]) -> tuple[Photo, ...]:
    photos = []
    for name in names:
        found, skipped = readable_photos(_present_files(name))
        for problem in skipped:  # a damaged package file is left out, not fatal
            warnings.warn(f"photo source {name!r}: {problem}", stacklevel=2)
        photos += [Photo(f"{name}/{path.stem}", _provenance(_SOURCES[name]), image)
                   for path, image in found]
    return tuple(sorted(photos, key=lambda photo: photo.name))


def _install_hint() -> str:
    pip = [source.package for source in _SOURCES.values() if source.module is not None]
    apt = [source.package for source in _SOURCES.values() if source.module is None]
    return f"pip install {' '.join(pip)}; on Debian/Ubuntu also apt-get install {' '.join(apt)}"


def load_photos(sources: Iterable[str] | None = None) -> list[Photo]:
    """The photos of `sources` (default: all) that are installed, sorted by name.

    Decoded once per process; the Photo objects and their images are shared between calls.
    """
    names = tuple(sorted(set(SOURCES if sources is None else sources)))
    unknown = set(names) - set(SOURCES)
    if unknown:
        raise UserError(f"unknown photo sources {sorted(unknown)}: choose from {SOURCES}")
    photos = list(_load(names))  # a new list, so that callers cannot change the cached one
    if not photos:
        tried = ", ".join(names) or "none"
        raise PhotosUnavailable(f"no photos found (sources tried: {tried}). {_install_hint()}")
    return photos


def photo_tensor(photos: Sequence[Photo], size: int) -> torch.Tensor:
    """[N, 3, size, size] in [0, 1]: shorter side resized to `size`, then the centre square."""
    return torch.stack([centre_square(photo.image, size) for photo in photos])


def centre_square(image: Image.Image, size: int) -> torch.Tensor:
    """[3, size, size] in [0, 1]: shorter side resized to `size`, then the centre square."""
    scale = size / min(image.size)
    # max() keeps rounding from leaving the shorter side one pixel short of `size`.
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    # PIL's bicubic filter widens with the scale factor, so shrinking is antialiased.
    resized = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    square = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32)
    return torch.from_numpy(square).permute(2, 0, 1) / 255
