"""An activation index over any folder of images, kept on disk, resumable and incremental.

    python -m vitviz index --model dinov2_vits14 --layers encoder.layers.encoder_layer_6.mlp.1 \\
        --photos ~/data/imagenet/val

The images stream through the model in batches (never all in memory): each image's centre
square, resized to the model's input as the built-in photos are (`vitviz.data.photos`), goes through
the network once for all the layers asked for. Per layer and unit the index keeps the k images
that drive the unit most and the k that drive it least, with their values (ranked by the unit's
drive, `vitviz.models.drive`, which on a GELU layer is not the output's order); the k strongest
positions over all images (patch tokens of a ViT layer, cells of a CNN feature map: the image,
where in it, and the value), which show the part of an image the unit responds to; the count,
sum, sum of squares, minimum and maximum; and a sample of values for quantiles, taken on the
images whose path hash is smallest, so that the sample is the same set of images for every unit
and stays a uniform sample as files are added.

Everything lives in one `.npz` per index (the files done are inside it), replaced atomically
every few batches: Ctrl-C or a crash loses at most the batches since the last save, never the
index. A rerun skips the files already indexed (path, size, modification time) and adds the
new ones; an unreadable file is skipped, counted and not tried again.

Size: per layer, units x (10k + sample) numbers; 1536 units with k = 16 and a 256-value sample
take about 3 MB, whatever the number of images, plus a line per file in the file list.
Memory while indexing: one batch of images and its activations, plus that.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vitviz.common.hashing import config_key
from vitviz.data.photos import UnreadableImage, centre_square, read_rgb
from vitviz.errors import UserError
from vitviz.models.drive import capture_drives
from vitviz.models.forward import activations
from vitviz.models.layers import find_layer
from vitviz.models.loaded import LoadedModel
from vitviz.models.tokens import positions as token_positions
from vitviz.models.tokens import unit_values

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
FORMAT_VERSION = 4  # 2: top patches (positions) per unit; 3: extremes ranked by the drive;
# 4: top positions ranked by the drive too

# Called as progress(images done this run, images to do this run).
IndexProgress = Callable[[int, int], None]


class IndexProblem(UserError):
    pass


def image_files(folder: Path) -> list[Path]:
    """Every image below `folder` (recursive), in a stable order."""
    if not folder.is_dir():
        raise IndexProblem(f"{folder} is not a folder of images.")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def _file_id(folder: Path, path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:  # gone since the folder was listed: skipped, and tried again when back
        return f"{path.relative_to(folder).as_posix()}|-1|-1"
    return f"{path.relative_to(folder).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}"


def _sample_rank(relative: str) -> int:
    """A fixed pseudo-random rank per path: the sample keeps the smallest ranks."""
    return int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big")


@dataclass
class LayerStats:
    """One layer's per-unit figures over the images indexed so far."""

    top_values: np.ndarray  # [units, k], the strongest first (by top_keys)
    top_ids: np.ndarray  # [units, k] indices into the index's files; -1: none yet
    bottom_values: np.ndarray  # [units, k], the weakest first (by bottom_keys)
    bottom_ids: np.ndarray
    # The drive (vitviz.models.drive) of the kept images: what ranks them. Equal to the values on
    # layers where the output keeps the drive's order.
    top_keys: np.ndarray  # [units, k]
    bottom_keys: np.ndarray  # [units, k]
    total: np.ndarray  # [units] float64 sums
    squares: np.ndarray  # [units] float64 sums of squares
    minimum: np.ndarray
    maximum: np.ndarray
    sample_values: np.ndarray  # [units, m] values on the sample images
    sample_ranks: np.ndarray  # [m] uint64 rank of each sample image; max: empty slot
    # The k strongest positions (patch tokens, or cells of a feature map) over all images:
    # value, image id and position (row-major on the grid of `grid` x `grid`); grid 0: none.
    patch_values: np.ndarray  # [units, k]
    patch_ids: np.ndarray  # [units, k]
    patch_positions: np.ndarray  # [units, k]
    grid: np.ndarray  # [] side of the grid of positions
    patch_keys: np.ndarray  # [units, k] the positions' drive, which ranks them

    @classmethod
    def empty(cls, units: int, k: int, sample: int) -> "LayerStats":
        return cls(np.full((units, k), -np.inf, np.float32), np.full((units, k), -1, np.int64),
                   np.full((units, k), np.inf, np.float32), np.full((units, k), -1, np.int64),
                   np.full((units, k), -np.inf, np.float32), np.full((units, k), np.inf, np.float32),
                   np.zeros(units), np.zeros(units), np.full(units, np.inf, np.float32),
                   np.full(units, -np.inf, np.float32),
                   np.full((units, sample), np.nan, np.float32),
                   np.full(sample, np.iinfo(np.uint64).max, np.uint64),
                   np.full((units, k), -np.inf, np.float32), np.full((units, k), -1, np.int64),
                   np.full((units, k), -1, np.int64), np.array(0),
                   np.full((units, k), -np.inf, np.float32))

    def add_patches(self, top: PatchTop, ids: np.ndarray) -> None:
        """Fold a batch's strongest positions in (`top` from `measure_batch`)."""
        keys, values, images, positions, grid = top
        self.grid = np.array(grid)
        merged = np.concatenate([self.patch_keys, keys.T], axis=1)
        order = np.argsort(-merged, axis=1, kind="stable")[:, :merged.shape[1] - keys.shape[0]]
        for name, new in (("patch_keys", keys.T), ("patch_values", values.T),
                          ("patch_ids", ids[images].T), ("patch_positions", positions.T)):
            both = np.concatenate([getattr(self, name), new], axis=1)
            setattr(self, name, np.take_along_axis(both, order, axis=1))

    def add(self, values: np.ndarray, ids: np.ndarray, ranks: np.ndarray,
            drive: np.ndarray | None = None) -> None:
        """Fold a batch in: `values` [batch, units], the images' ids and sample ranks, and the
        units' drive [batch, units] where it can rank the images differently from the values."""
        k = self.top_values.shape[1]
        keys = values if drive is None else drive
        for extreme, sign in (("top", 1), ("bottom", -1)):
            merged_keys = np.concatenate([getattr(self, f"{extreme}_keys"), keys.T], axis=1)
            order = np.argsort(-sign * merged_keys, axis=1, kind="stable")[:, :k]
            for field, new in (("keys", keys.T), ("values", values.T),
                               ("ids", np.broadcast_to(ids, values.T.shape))):
                merged = np.concatenate([getattr(self, f"{extreme}_{field}"), new], axis=1)
                setattr(self, f"{extreme}_{field}", np.take_along_axis(merged, order, axis=1))
        self.total += values.sum(axis=0, dtype=np.float64)
        self.squares += (values.astype(np.float64) ** 2).sum(axis=0)
        self.minimum = np.minimum(self.minimum, values.min(axis=0))
        self.maximum = np.maximum(self.maximum, values.max(axis=0))
        m = self.sample_ranks.shape[0]
        ranks_all = np.concatenate([self.sample_ranks, ranks])
        keep = np.argsort(ranks_all, kind="stable")[:m]
        self.sample_ranks = ranks_all[keep]
        self.sample_values = np.concatenate([self.sample_values, values.T], axis=1)[:, keep]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}/{name}": value for name, value in vars(self).items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "LayerStats":
        return cls(**{name: arrays[f"{prefix}/{name}"] for name in cls.__dataclass_fields__})


SETTINGS = ("model", "weights", "tokens", "k", "sample")


class ActivationIndex:
    """The index of one model, layer set and folder: build with `build_index`, read with `top`."""

    def __init__(self, path: Path, folder: Path, layers: Sequence[str], files: list[str],
                 skipped: list[str], stats: dict[str, LayerStats], settings: dict):
        self.path, self.folder, self.layers = path, folder, list(layers)
        self.files, self.skipped, self.stats = files, skipped, stats
        self.settings = settings  # model, weights, tokens, k, sample: what it was built with

    @property
    def count(self) -> int:
        return len(self.files)

    def top(self, layer: str, unit: int, k: int | None = None, bottom: bool = False
            ) -> list[tuple[Path, float]]:
        """The images (paths under the folder) that drive `unit` most (or least), with values:
        in the order of the unit's drive, which on the tail of a GELU is not the values' order."""
        stats = self._layer(layer)
        values = (stats.bottom_values if bottom else stats.top_values)[unit]
        ids = (stats.bottom_ids if bottom else stats.top_ids)[unit]
        found = [(self.folder / self.files[i].split("|")[0], float(v))
                 for i, v in zip(ids, values) if i >= 0]
        return found[:k] if k else found

    def top_patches(self, layer: str, unit: int, k: int | None = None
                    ) -> list[tuple[Path, float, tuple[float, float, float, float]]]:
        """The positions (patch tokens, or cells of a feature map) that drive `unit` most over
        all images, in the order of its drive: (path, value, box as fractions of the image's
        centre square)."""
        stats = self._layer(layer)
        side = int(stats.grid)
        found = []
        for i, value, position in zip(stats.patch_ids[unit], stats.patch_values[unit],
                                      stats.patch_positions[unit]):
            if i < 0 or not side:
                continue
            row, col = divmod(int(position), side)
            found.append((self.folder / self.files[i].split("|")[0], float(value),
                          (col / side, row / side, (col + 1) / side, (row + 1) / side)))
        return found[:k] if k else found

    def summary(self, layer: str, unit: int) -> dict[str, float]:
        stats, n = self._layer(layer), self.count
        mean = stats.total[unit] / max(n, 1)
        sample = stats.sample_values[unit]
        sample = sample[~np.isnan(sample)]
        quantiles = np.quantile(sample, [0.5, 0.9, 0.99]) if sample.size else [np.nan] * 3
        return {"images": n, "max": float(stats.maximum[unit]), "min": float(stats.minimum[unit]),
                "mean": float(mean),
                "std": float(np.sqrt(max(stats.squares[unit] / max(n, 1) - mean ** 2, 0.0))),
                "median": float(quantiles[0]), "q90": float(quantiles[1]),
                "q99": float(quantiles[2])}

    def _layer(self, layer: str) -> LayerStats:
        if layer not in self.stats:
            raise IndexProblem(f"this index has layers {', '.join(self.layers)}, not {layer}.")
        return self.stats[layer]

    def save(self) -> None:
        arrays = {name: value for index, layer in enumerate(self.layers)
                  for name, value in self.stats[layer].arrays(f"layer{index}").items()}
        meta = {**self.settings, "format": FORMAT_VERSION, "folder": str(self.folder),
                "layers": self.layers, "files": self.files, "skipped": self.skipped}
        partial = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        partial.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> "ActivationIndex":
        with np.load(path) as stored:
            meta = _meta(stored)
            stats = {layer: LayerStats.from_arrays(stored, f"layer{i}")
                     for i, layer in enumerate(meta["layers"])}
        settings = {key: meta[key] for key in SETTINGS if key in meta}
        return cls(path, Path(meta["folder"]), meta["layers"], meta["files"], meta["skipped"],
                   stats, settings)


def _meta(stored) -> dict:
    return json.loads(stored["meta"].tobytes())


def read_meta(path: Path) -> dict:
    """An index file's settings, folder, layers and file list, without its arrays."""
    with np.load(path) as stored:
        return _meta(stored)


def index_path(model: LoadedModel, layers: Sequence[str], folder: Path, tokens: str | int,
               k: int, sample: int, root: Path) -> Path:
    """One file per model (and weights), layer set, folder and settings."""
    key = config_key({"model": model.registry_name, "weights": model.weights_id,
                      "layers": list(layers), "folder": str(folder), "tokens": tokens, "k": k,
                      "sample": sample, "format": FORMAT_VERSION})
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise IndexProblem(f"cannot keep indexes in {root}: {error.strerror or error}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise IndexProblem(f"cannot keep indexes in {root}: it is not writable")
    return root / f"{model.registry_name.replace(':', '_')}-{key[:16]}.npz"


# A batch's k strongest positions per unit, by drive: their drive [k, units], values [k, units],
# the image in the batch of each [k, units], its position on the grid [k, units], and the
# grid's side.
PatchTop = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]
# What one batch of files gives: the positions in the batch of the readable files, per layer
# their unit values [readable, units], per GELU or ReLU layer their drive [readable, units],
# and per layer with positions their PatchTop.
BatchValues = tuple[list[int], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, PatchTop]]


def positions(act: torch.Tensor, prefix_tokens: int) -> torch.Tensor | None:
    """[batch, positions, units] of a token layer (patch tokens) or a feature map (its cells);
    None for a layer without positions or whose positions do not form a square grid."""
    grid = token_positions(act, prefix_tokens)
    if grid is None:
        return None
    side = int(round(grid.shape[1] ** 0.5))
    return grid if side * side == grid.shape[1] and side > 0 else None


def top_positions(grid: torch.Tensor, k: int, keys: torch.Tensor | None = None) -> PatchTop:
    """The k (image, position) pairs of every unit in `grid` [batch, P, units] with the largest
    `keys` (the units' drive at each position; the values themselves where None): their keys,
    values, images and positions, and the grid's side."""
    batch, count, units = grid.shape
    keys = grid if keys is None else keys
    top = keys.reshape(batch * count, units).topk(min(k, batch * count), dim=0)
    values = grid.reshape(batch * count, units).gather(0, top.indices)
    flat = top.indices.cpu().numpy()
    return (top.values.cpu().numpy(), values.cpu().numpy(), flat // count, flat % count,
            int(round(count ** 0.5)))


def measure_batch(model: LoadedModel, layers: Sequence[str], tokens: str | int,
                  paths: Sequence[Path], k: int = 16) -> BatchValues:
    """Decode a batch of files (unreadable ones left out) and measure every layer's units,
    with each unit's k strongest positions.

    The one measurement of both engines: batches are fixed groups of files, so the local and
    the Ray engine run the very same forward passes and build the same index."""
    size = model.preprocessing.size
    kept, tensors = [], []
    for position, path in enumerate(paths):
        try:
            tensors.append(centre_square(read_rgb(path), size))
            kept.append(position)
        except (UnreadableImage, OSError):  # a bomb, truncated, empty, not an image, gone
            continue
    if not tensors:
        return kept, {}, {}, {}
    with torch.no_grad(), capture_drives(model.module, layers) as captured:
        acts = activations(model, model.normalise(torch.stack(tensors).to(model.device)), layers)
    values, drives, tops = {}, {}, {}
    for layer, found in captured.items():
        drives[layer] = unit_values(found[-1], tokens, model.prefix_tokens).cpu().numpy()
    for layer in layers:
        act = acts[layer].float()
        values[layer] = unit_values(act, tokens, model.prefix_tokens).cpu().numpy()
        grid = positions(act, model.prefix_tokens)
        if grid is not None:
            keys = positions(captured[layer][-1], model.prefix_tokens) if layer in captured \
                else None
            tops[layer] = top_positions(grid, k, keys)
    return kept, values, drives, tops


def measure_payload(model: LoadedModel, payload: tuple) -> BatchValues:
    """`measure_batch` with its arguments in one picklable payload, for the Ray engine."""
    layers, tokens, paths, k = payload
    return measure_batch(model, layers, tokens, paths, k)


ENGINES = ("local", "ray")


def build_index(model: LoadedModel, layers: Sequence[str], folder: str | Path, root: Path, *,
                tokens: str | int = "patch", k: int = 16, sample: int = 256,
                batch_size: int = 32, save_every: int = 8, engine: str = "local",
                workers: int = 2, progress: IndexProgress | None = None
                ) -> tuple[ActivationIndex, int]:
    """Index the images of `folder` not indexed yet; returns the index and how many it added.

    `engine="ray"` measures the batches on Ray actors (`workers` of them, vitviz.data.ray_engine);
    this process folds them in, in file order, so both engines give the same index."""
    folder = Path(folder).expanduser().resolve()
    infos = [find_layer(model, layer) for layer in layers]  # unknown layers fail first
    if not 1 <= k <= 1024 or not 1 <= sample <= 100_000 or not 1 <= batch_size <= 4096:
        raise IndexProblem("k must be 1 to 1024, the sample 1 to 100000 and the batch 1 to "
                           "4096 images.")
    if not 1 <= workers <= 64:
        raise IndexProblem(f"workers must be 1 to 64 (got {workers}).")
    if engine not in ENGINES:
        raise IndexProblem(f"engine '{engine}' is unknown: use one of {', '.join(ENGINES)}.")
    if not folder.is_dir():  # before the index's folder is made
        raise IndexProblem(f"{folder} is not a folder of images.")
    path = index_path(model, layers, folder, tokens, k, sample, root)
    if path.is_file():
        index = ActivationIndex.load(path)
    else:
        index = ActivationIndex(path, folder, layers, [], [], {
            info.name: LayerStats.empty(info.units, k, sample) for info in infos}, {
            "model": model.registry_name, "weights": model.weights_id, "tokens": str(tokens),
            "k": k, "sample": sample})
    done = set(index.files) | set(index.skipped)
    todo = [p for p in image_files(folder) if _file_id(folder, p) not in done]
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    if engine == "ray":
        from vitviz.data.ray_engine import map_in_order

        measured = map_in_order(model, "vitviz.data.index:measure_payload",
                                [(list(layers), tokens, paths, k) for paths in batches], workers)
    else:
        measured = (measure_batch(model, layers, tokens, paths, k) for paths in batches)
    added = 0
    for batch_number, (paths, (kept, values, drives, tops)) in enumerate(zip(batches, measured)):
        readable = [paths[i] for i in kept]
        index.skipped += [_file_id(folder, p) for i, p in enumerate(paths) if i not in kept]
        ids = np.arange(len(index.files), len(index.files) + len(readable))
        ranks = np.array([_sample_rank(p.relative_to(folder).as_posix()) for p in readable],
                         np.uint64)
        for layer in layers if readable else ():
            index.stats[layer].add(values[layer], ids, ranks, drives.get(layer))
            if layer in tops:
                index.stats[layer].add_patches(tops[layer], ids)
        index.files += [_file_id(folder, p) for p in readable]
        added += len(readable)
        if (batch_number + 1) % save_every == 0:
            index.save()
        if progress:
            progress(added, len(todo))
    index.save()
    return index, added
