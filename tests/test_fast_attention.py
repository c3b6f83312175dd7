"""The batch-first attention path computes what nn.MultiheadAttention computes, and steps aside
where it must (attention weights asked for, masks, a forward someone else replaced)."""
import torch
from torch import nn

from vitviz.models.attention import explicit_attention_mode
from vitviz.models.fast.attention import attend, fast_self_attention
from vitviz.models.forward import activations

from conftest import VIT_HIDDEN, assert_same_pass, fast_and_plain_passes


def _attention(tiny_vit) -> nn.MultiheadAttention:
    return tiny_vit.module.encoder.layers[0].self_attention


def test_activations_and_input_gradients_match_the_modules_own_attention(tiny_vit):
    assert_same_pass(*fast_and_plain_passes(tiny_vit))


def test_calls_it_does_not_cover_run_the_modules_own_forward(tiny_vit):
    mha = _attention(tiny_vit)
    x = torch.randn(2, 17, mha.embed_dim)
    with fast_self_attention(tiny_vit.module):
        assert "forward" in mha.__dict__, "torchvision's attention did not take the fast path"
        out, weights = mha(x, x, x, need_weights=True)
        allowed = torch.zeros(17, 17, dtype=torch.bool)
        masked, _ = mha(x, x, x, need_weights=False, attn_mask=allowed)
    assert weights is not None and weights.shape == (2, 17, 17)
    expected, _ = mha(x, x, x, need_weights=False)
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(masked, expected, atol=1e-5)
    assert "forward" not in mha.__dict__, "the module's forward was not restored"


def test_the_moving_target_probes_attention_is_left_in_place(tiny_vit):
    images = tiny_vit.normalise(torch.rand(2, 3, 32, 32))
    with explicit_attention_mode(tiny_vit) as maps:
        activations(tiny_vit, images, [VIT_HIDDEN])
    assert set(maps) == {"encoder.layers.encoder_layer_0.self_attention",
                         "encoder.layers.encoder_layer_1.self_attention"}


def _exact_attention(q, k, v):
    q, k, v = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    out = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v
    return out, (q, k, v)


def test_bf16_attention_on_the_cpu_is_as_accurate_as_the_fused_kernel():
    torch.manual_seed(0)
    # Logits of a few units, as in a trained ViT, where rounding the scores would show.
    q, k, v = ((torch.randn(2, 3, 65, 16) * 2).bfloat16() for _ in range(3))
    grad = torch.randn(2, 3, 65, 16).bfloat16()
    exact, leaves = _exact_attention(q, k, v)
    exact.backward(grad.double())

    def errors(attention):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = attention(*inputs)
        out.backward(grad)
        assert out.dtype == torch.bfloat16
        return [((a.double() - b).norm() / b.norm()).item() for a, b in
                zip([out, *(t.grad for t in inputs)], [exact, *(t.grad for t in leaves)])]

    ours, fused = errors(attend), errors(torch.nn.functional.scaled_dot_product_attention)
    assert max(ours) < 0.01
    assert all(a < 1.5 * b for a, b in zip(ours, fused)), (ours, fused)


def test_bf16_passes_on_the_cpu_take_the_explicit_path_and_fp32_the_fused_kernel(tiny_vit,
                                                                              monkeypatch):
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[0].dtype) or fused(*a, **k))
    images = torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = activations(tiny_vit, tiny_vit.normalise(images), [VIT_HIDDEN])[VIT_HIDDEN]
    assert calls == []
    fp32 = activations(tiny_vit, tiny_vit.normalise(images), [VIT_HIDDEN])[VIT_HIDDEN]
    assert calls == [torch.float32] * 2  # one per block
    assert torch.allclose(bf16.float(), fp32, atol=0.05)
