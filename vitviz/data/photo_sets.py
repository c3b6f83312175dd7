"""Which photos dataset examples and photo-relative figures come from: the built-in set, or an
activation index over a folder (`VITVIZ_PHOTOS=/path/to/folder`).

The built-in set (58 photos from registry packages, `vitviz.data.photos`) is measured on demand, a
layer at a time. A folder can hold any number of images, so it is never measured inside a page
or a figure: `python -m vitviz index` indexes it first (resumable, incremental), and what reads
it here is that index. `examples_for` gives either one behind the same interface (`unit_max`,
`top`, `image`, `label`), so the Dataset examples page and the quality figures do not care which.

The judge's two-alternative test reads an index too (`vitviz.quality.judge.IndexPool`): its queries
and exemplars are a unit's extreme images, which the index keeps. What stays on the built-in
set is MACO's magnitude spectrum, a prior of the method rather than a figure.
"""
from __future__ import annotations

import functools
import os
import shlex
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

from vitviz.data.examples import Example, measure_layer
from vitviz.data.photos import load_photos, photo_set_id
from vitviz.errors import UserError
from vitviz.models.loaded import LoadedModel

PHOTOS_ENV = "VITVIZ_PHOTOS"


def configured_folder(environ=None) -> Path | None:
    """The folder $VITVIZ_PHOTOS names, or None for the built-in set."""
    value = (os.environ if environ is None else environ).get(PHOTOS_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def current_photo_set_id(environ=None) -> str:
    """Which photos a photo-relative figure measured now is measured on: the folder
    $VITVIZ_PHOTOS names, or the built-in set's sources and counts (`photo_set_id`)."""
    folder = configured_folder(environ)
    return f"folder:{folder}" if folder else photo_set_id()


class IndexMissing(UserError):
    pass


def index_command(model, layer: str, folder: Path, tokens) -> str:
    """The command that indexes `folder`, ready to paste (a folder name may hold spaces)."""
    return (f"python -m vitviz index --model {shlex.quote(model.registry_name)} --layers "
            f"{shlex.quote(layer)} --photos {shlex.quote(str(folder))}"
            + (f" --tokens {shlex.quote(str(tokens))}" if tokens != "patch" else ""))


def find_index(model, layer: str, folder: Path, tokens, root: Path | None = None):
    """The index of `folder` that holds `layer` for this model (a LoadedModel or its card:
    name and weights) and token mode, with the most images; None when there is none."""
    from vitviz.common.paths import home
    from vitviz.data.index import FORMAT_VERSION

    root = root or home() / "indexes"
    best = None
    for path in sorted(root.glob(f"{model.registry_name.replace(':', '_')}-*.npz")):
        try:
            version = path.stat().st_mtime_ns
            meta = _meta(path, version)
        except (OSError, ValueError, KeyError):
            continue
        if (meta.get("format") == FORMAT_VERSION and meta.get("folder") == str(folder)
                and layer in meta.get("layers", []) and meta.get("weights") == model.weights_id
                and meta.get("tokens") == str(tokens)):
            if best is None or len(meta["files"]) > best[0]:
                best = (len(meta["files"]), path, version)
    return _load(best[1], best[2]) if best else None


# Read once per file version: a page reruns on every widget change, and a large folder's index
# (its file list, its arrays) takes long enough to read that every rerun would feel it.
@functools.lru_cache(maxsize=16)
def _meta(path: Path, version: int) -> dict:
    from vitviz.data.index import read_meta

    return read_meta(path)


@functools.lru_cache(maxsize=4)
def _load(path: Path, version: int):
    from vitviz.data.index import ActivationIndex

    return ActivationIndex.load(path)


class IndexedExamples:
    """A layer's dataset examples from an activation index, as `LayerActivations` gives them
    for the built-in set."""

    def __init__(self, index, layer: str):
        self.index, self.layer = index, layer
        self.photo_names = [f.split("|")[0] for f in index.files]

    @property
    def label(self) -> str:
        return f"{self.index.folder.name} ({self.index.count} images, indexed)"

    def unit_max(self, unit: int) -> float:
        return self.index.summary(self.layer, unit)["max"]

    def unit_min(self, unit: int) -> float:
        return self.index.summary(self.layer, unit)["min"]

    def ranked(self, unit: int, bottom: bool = False) -> list[tuple]:
        """(path, path) of every image the index keeps at the unit's extremes, strongest
        (weakest) first: each image is its own photo (vitviz.data.references)."""
        return [(path, path) for path, _ in self.index.top(self.layer, unit, bottom=bottom)]

    def extreme_views(self, unit: int, count: int, bottom: bool = False) -> list[Example]:
        """The unit's `count` strongest (weakest) whole images, as the index keeps them."""
        folder = self.index.folder
        return [Example(path.relative_to(folder).as_posix(), value, (0.0, 0.0, 1.0, 1.0), "photo")
                for path, value in self.index.top(self.layer, unit, count, bottom=bottom)]

    def top(self, unit: int, k: int = 8) -> dict[str, list[Example]]:
        folder = self.index.folder
        found = {"photo": [Example(path.relative_to(folder).as_posix(), value, (0.0, 0.0, 1.0, 1.0),
                                   "photo")
                           for path, value in self.index.top(self.layer, unit, k)]}
        patches = self.index.top_patches(self.layer, unit, k)
        if patches:
            found["patch"] = [Example(path.relative_to(folder).as_posix(), value, box, "patch")
                              for path, value, box in patches]
        return found

    def image(self, name: str):
        return _read(self.index.folder / name)


@functools.lru_cache(maxsize=64)
def _read(path: Path):
    from vitviz.data.photos import read_rgb

    return read_rgb(path)


# A ViT-B layer on the photo set is ~90 MB (its patch values); a server visited on many layers
# must not keep them all. Least recently used measurements go first.
LAYER_CACHE_BYTES = int(os.environ.get("VITVIZ_LAYER_CACHE_MB", "512")) * 2**20
_LAYER_CACHE: OrderedDict[tuple, tuple[weakref.ref, object, int]] = OrderedDict()
_LAYER_LOCK = threading.Lock()


def _layer_key(model: LoadedModel, layer: str, tokens: str | int) -> tuple:
    return (id(model.module), layer, str(tokens))


def _cached_layer(key: tuple, model: LoadedModel):
    with _LAYER_LOCK:
        entry = _LAYER_CACHE.get(key)
        # An id is reused once its module is freed: the weak reference tells the two apart.
        if entry is None or entry[0]() is not model.module:
            return None
        _LAYER_CACHE.move_to_end(key)
        return entry[1]


def has_photo_statistics(model: LoadedModel, layer: str, tokens: str | int = "patch") -> bool:
    """Whether `photo_statistics` would answer without measuring."""
    return _cached_layer(_layer_key(model, layer, tokens), model) is not None


def photo_statistics(model: LoadedModel, layer: str, tokens: str | int = "patch", progress=None):
    """The layer's activations on the photo set, kept for the most recently used layers."""
    key = _layer_key(model, layer, tokens)
    stats = _cached_layer(key, model)
    if stats is None:
        stats = measure_layer(model, layer, load_photos(), tokens, progress=progress)
        size = stats.nbytes()
        with _LAYER_LOCK:
            _LAYER_CACHE[key] = (weakref.ref(model.module), stats, size)
            while (len(_LAYER_CACHE) > 1
                   and sum(entry[2] for entry in _LAYER_CACHE.values()) > LAYER_CACHE_BYTES):
                _LAYER_CACHE.popitem(last=False)
    return stats


def examples_for(model: LoadedModel, layer: str, tokens="patch", progress=None, environ=None):
    """The layer's dataset examples from the configured photo set: an index of $VITVIZ_PHOTOS
    (IndexMissing, with the command that builds it, when there is none) or the built-in set."""
    folder = configured_folder(environ)
    if folder is None:
        return photo_statistics(model, layer, tokens, progress)
    return indexed_examples(model, layer, tokens, folder)


def indexed_examples(model, layer: str, tokens, folder: Path) -> IndexedExamples:
    """The examples of `folder`'s index (IndexMissing, with the command, when there is none).
    Needs only the model's name and weights: a card will do, nothing is loaded."""
    index = find_index(model, layer, folder, tokens)
    if index is None:
        raise IndexMissing(f"$VITVIZ_PHOTOS names {folder}, which has no index for {layer} of "
                           f"{model.registry_name} yet: run `{index_command(model, layer, folder, tokens)}` "
                           f"(resumable; unset {PHOTOS_ENV} to use the built-in photos).")
    return IndexedExamples(index, layer)
