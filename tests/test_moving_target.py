import copy

import pytest
import torch

from vitviz.analysis.moving_target import block_parts, split
from vitviz.errors import UserError
from vitviz.models.attention import attention_modules, explicit_attention_mode
from vitviz.models.hooks import run_and_capture
from vitviz.rendering import objectives as O
from vitviz.store.runs import RunRequest, compute_result

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN


def test_explicit_attention_matches_torch_and_returns_per_head_maps(tiny_vit):
    name = "encoder.layers.encoder_layer_0.self_attention"
    mha = attention_modules(tiny_vit)[name]
    x = torch.randn(3, 17, 32)
    expected, weights = mha(x, x, x, need_weights=True)
    with explicit_attention_mode(tiny_vit) as maps:
        output, _ = mha(x, x, x, need_weights=False)
    assert torch.allclose(output, expected, atol=1e-5)
    assert maps[name].shape == (3, 2, 17, 17)
    assert torch.allclose(maps[name].sum(dim=-1), torch.ones(3, 2, 17))
    assert torch.allclose(maps[name].mean(dim=1), weights, atol=1e-6)  # torch's, head-averaged


def test_frozen_maps_change_the_output_and_modules_are_restored(tiny_vit):
    images = torch.rand(2, 3, 32, 32)
    block = ["encoder.layers.encoder_layer_1"]

    def output():
        return run_and_capture(tiny_vit.module, images, block)[block[0]]

    plain = output()
    with explicit_attention_mode(tiny_vit) as maps:
        live = output()
    uniform = {name: torch.full_like(m, 1 / m.shape[-1]) for name, m in maps.items()}
    with explicit_attention_mode(tiny_vit, uniform):
        frozen = output()
    assert torch.allclose(live, plain, atol=1e-5)
    assert not torch.allclose(live, frozen, atol=1e-3)
    assert all("forward" not in vars(m) for m in attention_modules(tiny_vit).values())
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


def _split_all(result):
    steps, items = len(result.steps), len(result.config["seeds"])
    return [[split(result.context, item, step) for item in range(items)] for step in range(steps)]


def test_both_splits_add_up_to_the_gain_at_every_step(tiny_vit):
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0, 1), "naive",
                         {"steps": 6}, moving_target=True)
    result = compute_result(request, tiny_vit)
    for step, row in enumerate(_split_all(result)):
        for parts in row:
            assert abs(parts["content"] + parts["context"] - parts["total"]) < 1e-5
            assert abs(parts["content_order_free"] + parts["context_order_free"]
                       - parts["total"]) < 1e-5
            if step == 0:
                assert max(abs(v) for k, v in parts.items() if k != "start") < 1e-6
    assert result.metrics["moving_target"] == _split_all(result)[-1]
    # The two orders differ on a real ViT, or the order-free figure would say nothing new.
    last = _split_all(result)[-1]
    assert any(abs(p["content"] - p["content_order_free"]) > 1e-6 for p in last)


def test_the_orders_agree_when_attention_does_not_depend_on_the_image(tiny_vit):
    """Zero query and key projections: every attention map is uniform whatever the image, so
    the whole gain is content, in either order."""
    flat = copy.deepcopy(tiny_vit)
    for mha in attention_modules(flat).values():
        width = mha.embed_dim
        mha.in_proj_weight.data[:2 * width] = 0
        mha.in_proj_bias.data[:2 * width] = 0
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0,), "naive",
                         {"steps": 6}, moving_target=True)
    (parts,) = compute_result(request, flat).metrics["moving_target"]
    assert abs(parts["total"]) > 1e-4
    assert abs(parts["context"]) < 1e-6 and abs(parts["context_order_free"]) < 1e-6
    assert abs(parts["content"] - parts["content_order_free"]) < 1e-6


def test_block_parts_locate_the_context_and_are_recorded_every_few_steps(tiny_vit):
    """Block 0's attention made image-independent (zero query and key projections) cannot move
    the target: its part is zero, while block 1's is not."""
    blind = copy.deepcopy(tiny_vit)
    mha = attention_modules(blind)["encoder.layers.encoder_layer_0.self_attention"]
    mha.in_proj_weight.data[:2 * mha.embed_dim] = 0
    mha.in_proj_bias.data[:2 * mha.embed_dim] = 0
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0, 1), "naive",
                         {"steps": 10}, record_every=4, moving_target=True)
    result = compute_result(request, blind)
    recorded = [step for step, blocks in zip(result.steps, result.context["context_blocks"])
                if blocks]
    assert recorded == [0, 4, 8, 10]
    for item in (0, 1):
        parts = block_parts(result.context, item)
        assert abs(parts["encoder.layers.encoder_layer_0.self_attention"]) < 1e-6
        assert abs(parts["encoder.layers.encoder_layer_1.self_attention"]) > 1e-4
        context_part = split(result.context, item)["context"]
        assert abs(sum(parts.values()) - context_part) < 1e-5
    with pytest.raises(UserError, match="no per-block figures"):
        block_parts(result.context, 0, step=1)


def _blind(tiny_vit):
    """tiny_vit with attention that ignores the image: zero query and key projections."""
    blind = copy.deepcopy(tiny_vit)
    for mha in attention_modules(blind).values():
        mha.in_proj_weight.data[:2 * mha.embed_dim] = 0
        mha.in_proj_bias.data[:2 * mha.embed_dim] = 0
    return blind


@pytest.mark.parametrize("preset", ["naive", "robust"])
def test_a_frozen_context_run_equals_the_live_one_when_attention_cannot_move(tiny_vit, preset):
    blind = _blind(tiny_vit)
    # fp32 whatever the CPU: the frozen pass computes attention explicitly and the live one
    # with the fused kernel, which in bf16 round differently (close, not equal to 1e-4).
    runs = [compute_result(RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0, 1), preset,
                                      {"steps": 5, "precision": "fp32"}, frozen_context=frozen),
                           blind)
            for frozen in (False, True)]
    assert runs[1].config["frozen_context"] and "frozen_context" not in runs[0].config
    assert torch.allclose(torch.tensor(runs[0].activation), torch.tensor(runs[1].activation),
                          atol=1e-4)


def test_a_frozen_context_run_differs_and_still_lifts_most_units(tiny_vit):
    # Without the photo prior, which holds back some of this untrained network's units
    # whatever the context does (test_optimise).
    knobs = {"steps": 30, **NO_PHOTO_PRIOR}
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, tuple(range(16))).spec(),
                         tuple([0] * 16), "robust", knobs, frozen_context=True)
    frozen = compute_result(request, tiny_vit)
    live = compute_result(RunRequest("tiny_vit", request.objective, request.seeds, "robust",
                                     knobs), tiny_vit)
    rises = sum(curve[-1] > curve[0] for curve in frozen.activation)
    assert rises >= 14, rises
    assert not torch.allclose(torch.tensor(frozen.activation), torch.tensor(live.activation),
                              atol=1e-3)


def test_where_the_tokens_look_is_a_distribution_over_patches_and_uniform_when_blind(tiny_vit):
    request = RunRequest("tiny_vit", O.neuron(VIT_HIDDEN, 5).spec(), (0, 1), "naive",
                         {"steps": 8}, record_every=4, moving_target=True)
    looks = [(step, views) for step, views in
             zip(compute_result(request, tiny_vit).steps,
                 compute_result(request, tiny_vit).context["attention_where"]) if views]
    assert [step for step, _ in looks] == [0, 4, 8]
    views = looks[-1][1]
    assert set(views) == {"encoder.layers.encoder_layer_0.self_attention",
                          "encoder.layers.encoder_layer_1.self_attention", "rollout"}
    for weights in views.values():
        assert torch.allclose(torch.tensor(weights).sum(dim=1), torch.ones(2), atol=1e-5)
        assert len(weights[0]) == 16  # the 4 x 4 patch grid, class token left out
    blind = compute_result(request, _blind(tiny_vit)).context["attention_where"][-1]
    assert torch.allclose(torch.tensor(blind["rollout"]), torch.full((2, 16), 1 / 16), atol=1e-5)
