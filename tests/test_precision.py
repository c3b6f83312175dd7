import math
import threading
from pathlib import Path

import pytest
import torch

from vitviz.errors import UserError
from vitviz.models.registry import wrap
from vitviz.rendering import objectives as O
from vitviz.rendering import precision
from vitviz.rendering.loop import optimise
from vitviz.rendering.presets import get_preset
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest, cached_result

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


@pytest.fixture
def bf16_hardware(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bf16 arithmetic."""
    def set_to(native: bool):
        monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    return set_to


def cpu_bf16_flags() -> set[str] | None:
    """The bf16 arithmetic flags that the kernel lists for this CPU (AVX-512 BF16, AMX), read
    apart from torch's probes; None where /proc/cpuinfo has no x86 flags line."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")),
                 None)
    return None if flags is None else {"avx512_bf16", "amx_bf16", "amx_tile"} & set(flags)


def test_auto_takes_bf16_only_where_the_hardware_has_it(tiny_vit, tmp_path):
    # This machine's own hardware, as the kernel reports it: no stand-in for the probe.
    flags = cpu_bf16_flags()
    if flags is not None:
        expected = "bf16" if flags else "fp32"
        precision._cpu_has_bf16.cache_clear()
        assert precision.resolve_precision("auto", "cpu") == expected, flags
        # A run of the default preset ("auto") on the CPU (where tests load the model) takes
        # the same arithmetic and records it.
        assert tiny_vit.device.type == "cpu"
        request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 3).spec(), (0,), "robust",
                             {"steps": 1})
        result, _ = cached_result(request, ResultCache(tmp_path / "cache"), lambda _: tiny_vit)
        assert get_preset("robust").precision == "auto" and result.precision == expected
    if torch.cuda.is_available():  # bf16 tensor cores from Ampere (compute capability 8) on
        ampere = torch.cuda.get_device_capability()[0] >= 8
        assert precision.resolve_precision("auto", "cuda") == ("bf16" if ampere else "fp32")
    # An explicit choice is kept whatever the hardware.
    for setting in ("fp32", "bf16"):
        assert precision.resolve_precision(setting, "cpu") == setting


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


def _robust(**knobs):
    return get_preset("robust").with_overrides(steps=3, **knobs)


def test_a_bf16_run_feeds_a_bf16_copy_made_once_and_leaves_the_model_fp32(tiny_vit):
    seen = []
    copy, autocast = precision.network(tiny_vit, "bf16")
    assert not autocast and precision.network(tiny_vit, "bf16")[0].module is copy.module
    target = copy.module.get_submodule(VIT_HIDDEN)
    hook = target.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    # Without the photo prior: its per-channel sort of the patch features ranks them anew under
    # bf16's rounding, which moves a picture by more than the rounding itself.
    try:
        bf16 = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 3), [0],
                             _robust(precision="bf16", **NO_PHOTO_PRIOR)))
    finally:
        hook.remove()
    assert set(seen) == {torch.bfloat16} and len(seen) == 2 * 3 + 1  # copies, record; final
    assert all(p.dtype == torch.float32 for p in tiny_vit.module.parameters())
    assert not any(p.requires_grad for p in copy.module.parameters())
    fp32 = list(optimise(tiny_vit, O.neuron(VIT_HIDDEN, 3), [0],
                         _robust(precision="fp32", **NO_PHOTO_PRIOR)))
    # The same picture to bf16's rounding, recorded in fp32.
    assert bf16[-1].images.dtype == torch.float32
    torch.testing.assert_close(bf16[-1].images, fp32[-1].images, atol=0.03, rtol=0)
    assert precision.network(tiny_vit, "fp32") == (tiny_vit, False)


class _FixedProjection(torch.nn.Module):
    """A network that keeps an fp32 tensor of its own outside its parameters: a bf16 copy of
    it cannot multiply its own activations with it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.act = torch.nn.GELU()
        self.fixed = torch.randn(8, 8)

    def forward(self, x):
        return self.act(self.conv(x).flatten(2).transpose(1, 2) @ self.fixed)


def test_a_network_that_cannot_run_as_a_bf16_copy_keeps_autocast():
    model = wrap(_FixedProjection(), "fixed_projection_test", size=16)
    assert precision.network(model, "bf16") == (model, True)
    records = list(optimise(model, O.neuron("act", 2), [0], _robust(precision="bf16")))
    assert all(map(math.isfinite, records[-1].activation))


class _Uncopyable(_FixedProjection):
    """A network holding something deepcopy refuses (a lock)."""

    def __init__(self):
        super().__init__()
        self.fixed = torch.eye(8)
        self.lock = threading.Lock()


def test_a_network_that_cannot_be_copied_keeps_autocast():
    model = wrap(_Uncopyable(), "uncopyable_test", size=16)
    assert precision.network(model, "bf16") == (model, True)
    records = list(optimise(model, O.neuron("act", 2), [0], _robust(precision="bf16")))
    assert all(map(math.isfinite, records[-1].activation))


def test_bf16_results_have_keys_of_their_own_and_fp32_results_keep_theirs():
    def config(precision_setting):
        return RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 3).spec(), (0,), "robust",
                          {"precision": precision_setting}).config()
    assert "bf16_arithmetic" not in config("fp32")
    assert config("auto")["bf16_arithmetic"] == config("bf16")["bf16_arithmetic"]
