import torch

from vitviz import objectives as O
from vitviz.hooks import run_and_capture
from vitviz.moving_target import attention_modules, explicit_attention, explicit_attention_mode
from vitviz.runs import RunRequest, compute_result

from conftest import VIT_HIDDEN


def test_explicit_attention_matches_torch_and_returns_per_head_maps(tiny_vit):
    mha = attention_modules(tiny_vit.module)["encoder.layers.encoder_layer_0.self_attention"]
    x = torch.randn(3, 17, 32)
    expected, _ = mha(x, x, x, need_weights=False)
    output, maps = explicit_attention(mha, x)
    assert torch.allclose(output, expected, atol=1e-5)
    assert maps.shape == (3, 2, 17, 17)
    assert torch.allclose(maps.sum(dim=-1), torch.ones(3, 2, 17))


def test_frozen_maps_change_the_output_and_modules_are_restored(tiny_vit):
    images = torch.rand(2, 3, 32, 32)
    block = ["encoder.layers.encoder_layer_1"]

    def output():
        return run_and_capture(tiny_vit.module, images, block)[block[0]]

    plain = output()
    with explicit_attention_mode(tiny_vit.module) as maps:
        live = output()
    uniform = {name: torch.full_like(m, 1 / m.shape[-1]) for name, m in maps.items()}
    with explicit_attention_mode(tiny_vit.module, uniform):
        frozen = output()
    assert torch.allclose(live, plain, atol=1e-5)
    assert not torch.allclose(live, frozen, atol=1e-3)
    assert all("forward" not in vars(m) for m in attention_modules(tiny_vit.module).values())
    assert torch.allclose(output(), plain)


def test_moving_target_run_records_context_statistics(tiny_vit):
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 3).spec(), (0, 1), "naive",
                         {"steps": 8}, moving_target=True)
    result = compute_result(request, tiny_vit)
    context = result.context
    assert len(context["attention_change"]) == 9 and len(context["attention_change"][0]) == 2
    assert context["attention_change"][0] == [0.0, 0.0]
    assert all(change > 0 for change in context["attention_change"][-1])
    assert len(context["attention_change_blocks"][-1]) == 2  # one value per block
    # At the start, frozen and live attention are the same maps.
    assert context["activation_frozen_start"][0] == context["activation_live"][0]
    assert torch.allclose(torch.tensor(context["activation_live"]).T, torch.tensor(result.activation), atol=1e-4)
