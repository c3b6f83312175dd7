"""The benchmark scripts' settings stay valid as the library changes (they run for hours)."""
import importlib.util
from pathlib import Path

import pytest

from vitviz.presets import DEFAULT_PRESET, get_preset
from vitviz.transforms import build_transforms

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWEEP = load("quality_sweep")


@pytest.mark.parametrize("variant", list(SWEEP.VARIANTS))
def test_every_sweep_variant_is_a_valid_preset(variant):
    preset = get_preset(DEFAULT_PRESET).with_overrides(**SWEEP.VARIANTS[variant])
    preset.check()
    build_transforms(preset.transforms)
    changed = {k for k, v in preset.knobs().items() if v != get_preset(DEFAULT_PRESET).knobs()[k]}
    assert (variant == DEFAULT_PRESET) == (not changed), changed
