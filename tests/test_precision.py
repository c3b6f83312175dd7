import pytest
import torch

from vitviz import objectives as O
from vitviz import precision
from vitviz.cache import ResultCache
from vitviz.errors import UserError
from vitviz.presets import get_preset
from vitviz.runs import RunRequest, cached_result

from conftest import VIT_HIDDEN


@pytest.fixture
def bf16_hardware(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bf16 arithmetic."""
    def set_to(native: bool):
        monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    return set_to


def test_auto_takes_bf16_only_where_the_hardware_has_it(bf16_hardware):
    bf16_hardware(True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    bf16_hardware(False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    # An explicit choice is kept whatever the hardware.
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_a_cpu_without_torch_s_probes_counts_as_fp32_only(monkeypatch):
    precision._cpu_has_bf16.cache_clear()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    try:
        assert not precision.native_bf16("cpu")
        assert precision.resolve_precision("auto", "cpu") == "fp32"
    finally:
        precision._cpu_has_bf16.cache_clear()


def test_the_default_preset_asks_for_auto_and_a_bad_setting_names_the_choices():
    assert get_preset("robust").precision == "auto"
    with pytest.raises(UserError, match="auto, fp32, bf16"):
        get_preset("robust").with_overrides(precision="fp16").check()


def test_auto_makes_the_resolved_setting_s_picture_and_records_it(tiny_vit, bf16_hardware,
                                                                    tmp_path):
    objective = O.neuron(VIT_HIDDEN, 3).spec()
    cache = ResultCache(tmp_path / "cache")

    def run(knobs, loader=lambda _: tiny_vit, cache=cache):
        return cached_result(RunRequest("tiny_vit", objective, (0,), "robust",
                                        {"steps": 4, **knobs}), cache, loader)

    fp32, bf16 = run({"precision": "fp32"})[0], run({"precision": "bf16"})[0]
    assert (fp32.images[0] != bf16.images[0]).any()  # the two arithmetics are told apart
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    bf16_hardware(True)
    auto = run({})[0]
    assert (auto.images[0] == bf16.images[0]).all() and auto.precision == "bf16"
    # Stored with the result: a cache hit reports it without loading the model.
    again, hit = run({}, lambda _: pytest.fail("a cache hit loads no model"))
    assert hit and again.precision == "bf16"
    bf16_hardware(False)
    auto = run({}, cache=ResultCache(tmp_path / "elsewhere"))[0]  # the key is the same "auto"
    assert (auto.images[0] == fp32.images[0]).all() and auto.precision == "fp32"
