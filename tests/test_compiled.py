"""Compiled blocks (vitviz.models.fast.compiled): the same numbers as eager, only blocks with nothing
attached run compiled, the model is left as it was, and a failing compiler falls back."""
import warnings

import pytest
import torch

from vitviz.models.fast import compiled
from vitviz.models.forward import activations
from vitviz.models.registry import load_model
from vitviz.rendering import objectives
from vitviz.rendering.loop import optimise
from vitviz.rendering.presets import get_preset

from conftest import VIT_HIDDEN

BLOCK_0 = "encoder.layers.encoder_layer_0"


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(compiled, "_broken", [])
    monkeypatch.setattr(compiled, "_COMPILED", compiled.weakref.WeakKeyDictionary())


def test_only_whole_blocks_that_finish_before_every_target_are_compiled(tiny_vit):
    assert compiled.compilable_blocks(tiny_vit, [VIT_HIDDEN]) == [BLOCK_0]  # target in block 1
    assert compiled.compilable_blocks(tiny_vit, [f"{BLOCK_0}.mlp.1"]) == []
    assert compiled.compilable_blocks(tiny_vit, [BLOCK_0]) == []
    assert compiled.compilable_blocks(tiny_vit, ["encoder.ln"]) == [
        BLOCK_0, "encoder.layers.encoder_layer_1"]


def test_a_run_with_compiled_blocks_gives_the_eager_pictures(fresh_state, monkeypatch):
    seen = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda module, **kw: seen.append(module) or real_compile(module, **kw))
    results = []
    # fp32 whatever the CPU: in bf16 the compiler's fused kernels round differently from eager
    # ones, so the pictures are close but not equal to 1e-4.
    fp32 = get_preset("robust").with_overrides(precision="fp32")
    for compile in (False, True):
        model = load_model("tiny_vit", "cpu", compile=compile)
        names_before = [name for name, _ in model.module.named_modules()]
        *_, last = optimise(model, objectives.neuron(VIT_HIDDEN, 5), [0, 1], fp32, steps=4,
                            record_every=0)
        assert [name for name, _ in model.module.named_modules()] == names_before
        results.append(last)
    assert [type(module).__name__ for module in seen] == ["EncoderBlock"]  # block 0 alone
    assert compiled.compile_failure() is None
    eager, fast = results
    assert torch.allclose(eager.images, fast.images, atol=1e-4)
    assert eager.activation == pytest.approx(fast.activation, rel=1e-3, abs=1e-4)


def test_a_block_with_a_hook_or_a_replaced_forward_stays_eager(tiny_vit, fresh_state,
                                                                monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    model = load_model("tiny_vit", "cpu", compile=True)
    block = model.module.get_submodule(BLOCK_0)
    with compiled.compiled_blocks(model, [VIT_HIDDEN]) as any_compiled:
        assert any_compiled
    handle = block.mlp.register_forward_hook(lambda *args: None)
    with compiled.compiled_blocks(model, [VIT_HIDDEN]) as any_compiled:
        assert not any_compiled
    handle.remove()
    block.self_attention.forward = lambda *args, **kwargs: None
    with compiled.compiled_blocks(model, [VIT_HIDDEN]) as any_compiled:
        assert not any_compiled
    del block.self_attention.forward


def test_a_failing_compiler_warns_once_and_the_model_runs_eagerly(fresh_state, monkeypatch):
    import torch._dynamo

    class Failing(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise torch._dynamo.exc.TorchDynamoException("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Failing())
    model = load_model("tiny_vit", "cpu", compile=True)
    images = model.normalise(torch.rand(2, 3, 32, 32))
    expected = activations(load_model("tiny_vit", "cpu"), images, [VIT_HIDDEN])[VIT_HIDDEN]
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        first = activations(model, images, [VIT_HIDDEN])[VIT_HIDDEN]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = activations(model, images, [VIT_HIDDEN])[VIT_HIDDEN]
    assert "no working C++ compiler" in compiled.compile_failure()
    assert torch.allclose(first, expected, atol=1e-5) and torch.allclose(second, expected, atol=1e-5)


def test_a_dropped_model_is_freed_with_its_compiled_blocks(fresh_state, monkeypatch):
    import gc
    import weakref

    monkeypatch.setattr(torch, "compile", lambda module, **kw: torch.nn.Sequential(module))
    model = load_model("tiny_vit", "cpu", compile=True)
    activations(model, model.normalise(torch.rand(1, 3, 32, 32)), [VIT_HIDDEN])
    assert len(compiled._COMPILED) == 1
    network = weakref.ref(model.module)
    del model
    gc.collect()
    assert network() is None and len(compiled._COMPILED) == 0
