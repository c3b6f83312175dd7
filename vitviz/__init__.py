"""vitviz: feature visualisation for Vision Transformers (and CNNs) that works.

The public face (`visualise`, `judge_unit`, `load_model`, `wrap`, `from_timm`,
`from_huggingface`, `from_open_clip`, `load_exported`, `save_exported`) resolves on first use,
so that importing one module of the library (the dashboard's settings read the preset names)
does not load every network's code, nor timm, transformers or OpenCLIP. docs/design.md maps
the sub-packages.
"""
import importlib

__version__ = "0.1.0"

_FACE = {
    "visualise": "vitviz.api",
    "judge_unit": "vitviz.api",
    "load_model": "vitviz.models.registry",
    "wrap": "vitviz.models.registry",
    "from_timm": "vitviz.models.registry",
    "from_huggingface": "vitviz.models.registry",
    "from_open_clip": "vitviz.models.registry",
    "load_exported": "vitviz.models.exported",
    "save_exported": "vitviz.models.exported",
}
__all__ = ["__version__", *sorted(_FACE)]


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module 'vitviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FACE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACE})
