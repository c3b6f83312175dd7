"""Networks: the registry and its loaders, the zoo, wrapping and export, what a model declares
about itself (loaded model, layer table and card, token layout), and the one forward pass with
its fast paths."""
import importlib

_FACE = {"LoadedModel": "vitviz.models.loaded", "load_model": "vitviz.models.registry",
         "wrap": "vitviz.models.registry"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    # Lazy, like vitviz's own face: a module of this package need not load the registry.
    if name not in _FACE:
        raise AttributeError(f"module 'vitviz.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_FACE[name]), name)
