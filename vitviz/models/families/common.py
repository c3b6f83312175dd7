"""What the library families share: their libraries imported only when asked for, a check of
the prefix tokens they read against the model's real token layout, the Hugging Face hub's
cache (where timm, transformers and OpenCLIP keep their weights), and untrained weights that
are the same in every process."""
from __future__ import annotations

import importlib
import re
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

import torch

from vitviz.common.hashing import file_sha256
from vitviz.models.layers import find_layer, transformer_blocks
from vitviz.models.loaded import ALLOW_DOWNLOAD_ENV, RANDOM_SUFFIX, LoadedModel, ModelError

# import name: (distribution, vitviz's extra that installs it)
LIBRARIES = {
    "timm": ("timm", "timm"),
    "transformers": ("transformers", "huggingface"),
    "open_clip": ("open-clip-torch", "open_clip"),
    "huggingface_hub": ("huggingface_hub", "huggingface"),
}
# One part of a name in a library's namespace: an architecture, an organisation, a repository.
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
RANDOM_SEED = 0


def library(name: str) -> ModuleType:
    """The library `name`, imported on first use: `import vitviz` never loads one."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        distribution, extra = LIBRARIES[name]
        raise ModelError(f"{distribution} is not installed: pip install \"vitviz[{extra}]\" "
                         f"(or pip install {distribution}).") from error


def check_part(part: str, what: str, example: str) -> None:
    if not PART.fullmatch(part):
        raise ModelError(f"'{part[:100]}' is not {what}: letters, digits, '.', '_' and '-', "
                         f"e.g. {example}.")


def side(value) -> int | None:
    """An input side from a library's way of writing it: 224, (224, 224), [3, 224, 224],
    {"height": 224, "width": 224} or {"shortest_edge": 224}; None for a non-square size."""
    if isinstance(value, dict):
        value = (value.get("shortest_edge") or (value.get("height"), value.get("width")))
    if isinstance(value, (tuple, list)):
        value = tuple(value[-2:])
        return int(value[0]) if len(value) == 2 and value[0] == value[1] and value[0] else None
    return int(value) if value else None


def check_tokens(model: LoadedModel, patch: int) -> LoadedModel:
    """The prefix tokens read from the model against its real token layout: its first block
    sees the prefix and one token per patch, or the model is refused (a wrong count silently
    averages the wrong tokens)."""
    size = model.preprocessing.size
    try:
        blocks = transformer_blocks(model)  # one dry pass at the model's size
    except Exception as error:  # the library's own complaint, in one line with the way out
        raise ModelError(f"{model.name} does not run on {size}-px images ({type(error).__name__}: "
                         f"{error}); pass size=... (its input side).") from error
    if not blocks:
        raise ModelError(f"{model.name}: no transformer block found; declare it with "
                         "vitviz.wrap(module, name, size=..., prefix_tokens=..., layer_roles=...).")
    tokens = find_layer(model, blocks[0]).shape[0]
    patches = (size // patch) ** 2
    if tokens != model.prefix_tokens + patches:
        raise ModelError(f"{model.name}: its blocks see {tokens} tokens, not the "
                         f"{model.prefix_tokens} prefix tokens it declares plus {patches} patches; "
                         "declare it with vitviz.wrap(module, name, size=..., prefix_tokens=...).")
    return model


@contextmanager
def seeded() -> Iterator[None]:
    """Untrained weights drawn from a fixed seed, so `NAME:random` is the same network in every
    process and its results are cacheable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        yield


def random_weights(distribution: str) -> str:
    """What an untrained model's weights are: its library's initialisation at the seed."""
    try:
        installed = version(distribution)
    except PackageNotFoundError:
        installed = "not installed"
    return f"random-init ({distribution} {installed}, seed {RANDOM_SEED})"


def file_weights(path: Path) -> str:
    return f"sha256:{file_sha256(path)}"


def hub_cache() -> Path:
    """The Hugging Face hub's cache folder ($HF_HUB_CACHE, by default ~/.cache/huggingface/hub)."""
    library("huggingface_hub")
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_file(repo: str, filenames: Sequence[str]) -> Path | None:
    """The first of `filenames` that the hub's cache holds for `repo` ('org/name' or
    'org/name@revision'); None if none is there. Never reaches the network."""
    hub = library("huggingface_hub")
    repo_id, _, revision = repo.partition("@")
    for filename in filenames:
        found = hub.try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache(),
                                           revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def fetched_file(repo: str, filenames: Sequence[str]) -> Path | None:
    """The first of `filenames` that `repo` has, downloaded into the hub's cache: only ever
    called where the operator allows downloads ($VITVIZ_ALLOW_DOWNLOAD=1)."""
    hub = library("huggingface_hub")
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, _, revision = repo.partition("@")
    for filename in filenames:
        try:
            return Path(hub.hf_hub_download(repo_id, filename, revision=revision or None,
                                            cache_dir=hub_cache()))
        except EntryNotFoundError:
            continue
    return None


def safe_alternative(filename: str) -> list[str]:
    """A checkpoint's names in the order the libraries look for them: the safetensors twin of
    a `.bin` file first (what the hub serves for timm and OpenCLIP weights), then the file."""
    twins = {"pytorch_model.bin": "model.safetensors",
             "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    twin = twins.get(filename) or (filename[:-4] + ".safetensors"
                                   if filename.endswith(".bin") else None)
    return [twin, filename] if twin else [filename]


def missing_weights(what: str, where: Path, fetch: str, untrained: str | None) -> str:
    """The one line a missing checkpoint ends in: what, where it was looked for, the way out
    (and the untrained copy, `untrained`, where that needs nothing from the cache)."""
    instead = f"; '{untrained}{RANDOM_SUFFIX}' needs no weights" if untrained else ""
    return (f"{what} is not in the local cache ({where}). Download it once on a machine with "
            f"internet ({fetch}) or set {ALLOW_DOWNLOAD_ENV}=1 to let vitviz fetch it{instead}.")
