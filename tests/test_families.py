"""ViTs from timm, Hugging Face transformers and OpenCLIP, each read from the model itself.

Every model here is its own library's class with random weights in a small configuration
(32 px, patch 8, width 64, 2 blocks): nothing is downloaded. The names `timm:...` and `hf:...`
read a Hugging Face hub cache laid out in a temporary folder."""
import dataclasses
import json
import subprocess
import sys
from contextlib import nullcontext

import huggingface_hub
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import transformers
from torch import nn

import vitviz
from vitviz.analysis.moving_target import MovingTargetProbe
from vitviz.models.attention import AttentionUnsupported, attention_modules, explicit_attention_mode
from vitviz.models.attention_kinds import AttentionKind
from vitviz.models.hooks import run_and_capture
from vitviz.models.layers import default_layer, layer_table, recommended_layers, transformer_blocks
from vitviz.models.loaded import IMAGENET_MEAN, ModelError, WeightsUnavailable
from vitviz.models.registry import load_model, model_weights, parse_model_name
from vitviz.rendering import objectives as O
from vitviz.rendering.presets import get_preset
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest, cached_result, compute_result

from conftest import NO_PHOTO_PRIOR
from test_optimise import rise_rate

HF = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
          intermediate_size=128)
PROCESSOR = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 32, "width": 32}}
REGISTERS = 4


def _timm(**extra) -> nn.Module:
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             depth=2, embed_dim=64, num_heads=2, num_classes=10, **extra)


# family: (build the model, its MLP hidden layer in its library's names, the module whose output
# (or input, for a "<" prefix) is the token sequence before any normalisation, its patch
# embedding, the model's own prefix tokens in their order, its position table)
FAMILIES = {
    "timm_registers": (
        lambda: vitviz.from_timm(_timm(reg_tokens=REGISTERS), "fam_timm_registers"),
        "blocks.1.mlp.act", "<blocks.0", "patch_embed",
        lambda m: [m.cls_token[0], m.reg_token[0]], lambda m: m.pos_embed),
    "timm_deit_distilled": (
        lambda: vitviz.from_timm(timm.create_model(
            "deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=8,
            depth=2, embed_dim=64, num_heads=2), "fam_timm_deit"),
        "blocks.1.mlp.act", "<blocks.0", "patch_embed",
        lambda m: [m.cls_token[0], m.dist_token[0]], lambda m: m.pos_embed),
    "hf_vit": (
        lambda: vitviz.from_huggingface(transformers.ViTModel(transformers.ViTConfig(**HF)),
                                        PROCESSOR, "fam_hf_vit"),
        "layers.1.mlp.activation_fn", "embeddings", "embeddings.patch_embeddings",
        lambda m: [m.embeddings.cls_token[0]], lambda m: m.embeddings.position_embeddings),
    "hf_dinov2_registers": (
        lambda: vitviz.from_huggingface(transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(**HF, mlp_ratio=2,
                                                   num_register_tokens=REGISTERS)),
            PROCESSOR, "fam_hf_dinov2"),
        "encoder.layer.1.mlp.activation_fn", "embeddings", "embeddings.patch_embeddings",
        lambda m: [m.embeddings.cls_token[0], m.embeddings.register_tokens[0]],
        lambda m: m.embeddings.position_embeddings),
    "hf_clip": (
        lambda: vitviz.from_huggingface(transformers.CLIPModel(transformers.CLIPConfig(
            vision_config=HF, text_config=dict(hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=64))),
            transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                            crop_size={"height": 32, "width": 32}),
            "fam_hf_clip"),
        "encoder.layers.1.mlp.activation_fn", "embeddings", "embeddings.patch_embedding",
        lambda m: [m.embeddings.class_embedding[None]],
        lambda m: m.embeddings.position_embedding.weight),
    "hf_siglip": (
        lambda: vitviz.from_huggingface(transformers.SiglipVisionModel(
            transformers.SiglipVisionConfig(**HF)), PROCESSOR, "fam_hf_siglip"),
        "encoder.layers.1.mlp.activation_fn", "embeddings", "embeddings.patch_embedding",
        lambda m: [], lambda m: m.embeddings.position_embedding.weight),
    "open_clip": (
        lambda: vitviz.from_open_clip(open_clip.transformer.VisionTransformer(
            image_size=32, patch_size=8, width=64, layers=2, heads=2, mlp_ratio=2.0,
            output_dim=32), mean=(0.5,) * 3, std=(0.5,) * 3, name="fam_open_clip"),
        "transformer.resblocks.1.mlp.gelu", "<ln_pre", "conv1",
        lambda m: [m.class_embedding[None]], lambda m: m.positional_embedding),
}
# What each model's own configuration says: timm's DeiT was trained on ImageNet's statistics,
# and CLIPImageProcessor holds OpenAI's.
MEAN = {family: (0.5, 0.5, 0.5) for family in FAMILIES} | {
    "timm_deit_distilled": IMAGENET_MEAN,
    "hf_clip": tuple(transformers.CLIPImageProcessor().image_mean)}
PREFIX = {"timm_registers": 1 + REGISTERS, "timm_deit_distilled": 2, "hf_vit": 1,
          "hf_dinov2_registers": 1 + REGISTERS, "hf_clip": 1, "hf_siglip": 0, "open_clip": 1}


def build(family: str):
    torch.manual_seed(0)
    return FAMILIES[family][0]()


def image_dependent(model):
    """`model` with its attention weights scaled up: timm's and transformers' initialisations
    (std 0.02) leave a small random ViT's maps almost uniform whatever the image, and a held
    context would barely differ from a live one."""
    with torch.no_grad():
        for module in attention_modules(model).values():
            for parameter in module.parameters():
                parameter.mul_(4)
    return model


def test_importing_vitviz_loads_none_of_the_libraries():
    code = ("import sys, vitviz\n"
            "from vitviz.models.registry import load_model, parse_model_name\n"
            "vitviz.from_timm, vitviz.from_huggingface, vitviz.from_open_clip\n"
            "load_model('tiny_vit'); parse_model_name('vit_b_16:random')\n"
            "loaded = [m for m in ('timm', 'transformers', 'open_clip') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_declares_its_input_tokens_and_layer_roles_itself(family):
    model = build(family)
    hidden = FAMILIES[family][1]
    assert model.preprocessing.size == 32 and model.preprocessing.mean == MEAN[family]
    assert model.prefix_tokens == PREFIX[family] and model.architecture == "vit"
    assert default_layer(model) == hidden  # the middle block's MLP hidden layer, by its own name
    assert [info.role for info in recommended_layers(model)] == ["mlp_hidden"] * 2
    assert len(transformer_blocks(model)) == 2 and len(attention_modules(model)) == 2
    assert all(not p.requires_grad for p in model.module.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_the_declared_prefix_tokens_are_the_real_token_layout(family):
    """With the position table zeroed, the token sequence is the model's own prefix tokens
    (class token, then registers or the distillation token) and after them its patches."""
    model = build(family)
    _, _, site, patches, prefix, positions = FAMILIES[family]
    module = model.module
    with torch.no_grad():
        positions(module).zero_()
    seen = {}
    target = module.get_submodule(site.lstrip("<"))
    if site.startswith("<"):
        handle = target.register_forward_pre_hook(lambda _, args: seen.update(tokens=args[0]))
    else:
        handle = target.register_forward_hook(lambda _, __, out: seen.update(tokens=out))
    images = model.normalise(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        embedded = run_and_capture(module, images, [patches])[patches]
    handle.remove()
    if embedded.dim() == 4:  # a convolution's map: one token per cell
        embedded = embedded.flatten(2).transpose(1, 2)
    tokens = seen["tokens"]
    assert tokens.shape[1] == model.prefix_tokens + 16
    expected = torch.cat([*prefix(module), torch.empty(0, tokens.shape[2])])
    assert torch.allclose(tokens[:, :model.prefix_tokens], expected.expand(2, -1, -1))
    assert torch.allclose(tokens[:, model.prefix_tokens:], embedded, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_loop_lifts_the_units_of_each_familys_mlp_hidden_layer(family):
    # Without the photo prior, which holds back 1 or 2 of 8 units of any untrained network
    # (test_optimise): what differs between families is how their tokens are read.
    model = build(family)
    hidden = FAMILIES[family][1]
    preset = get_preset("robust").with_overrides(**NO_PHOTO_PRIOR)
    rises, _ = rise_rate(model, lambda units: O.neuron(hidden, units), range(0, 128, 16),
                         preset, steps=16, seeds=(0,))
    assert rises >= 7 / 8, f"{family}: {rises:.0%} of 8 units rose"


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference relative to the largest value."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("family", FAMILIES)
def test_held_attention_maps_are_what_each_familys_attention_mixes_with(family):
    """Computed by hand, each family's attention gives the library's own output; the maps of
    one image, held, reproduce that image's pass exactly and change another image's."""
    model = image_dependent(build(family))
    block = transformer_blocks(model)[-1]
    first, second = (model.normalise(torch.rand(2, 3, 32, 32)) for _ in range(2))

    def output(images, frozen=None, by_hand=True):
        if not by_hand:
            return run_and_capture(model.module, images, [block])[block]
        with explicit_attention_mode(model, frozen) as maps:
            return run_and_capture(model.module, images, [block])[block], dict(maps)

    live, maps = output(first)
    assert set(maps) == set(attention_modules(model))
    assert all(torch.allclose(m.sum(dim=-1), torch.ones(2, 2, model.prefix_tokens + 16),
                              atol=1e-5) for m in maps.values())
    assert difference(live, output(first, by_hand=False)) < 1e-5
    assert difference(output(first, maps)[0], live) < 1e-6
    assert difference(output(second, maps)[0], output(second)[0]) > 1e-3
    assert all("forward" not in vars(m) for m in attention_modules(model).values())


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_context_runs_and_the_moving_target_probe_work_on_each_family(family):
    model = image_dependent(build(family))
    objective = O.neuron(FAMILIES[family][1], 3).spec()
    runs = [compute_result(RunRequest(model.name, objective, (0,), "naive",
                                      {"steps": 4, "precision": "fp32"}, frozen_context=held,
                                      moving_target=not held), model)
            for held in (False, True)]
    assert runs[1].config["frozen_context"] and "frozen_context" not in runs[0].config
    assert runs[0].activation[0][0] == pytest.approx(runs[1].activation[0][0], abs=1e-5)
    assert runs[0].activation[0][-1] != pytest.approx(runs[1].activation[0][-1], abs=1e-5)
    context = runs[0].context
    assert len(context["attention_change_blocks"][-1]) == 2
    curves = [context[key] for key in ("activation_live", "activation_frozen_start",
                                       "activation_start_tokens")]
    assert all(torch.isfinite(torch.tensor(curve)).all() for curve in curves)
    parts = runs[0].metrics["moving_target"][0]
    assert parts["content"] + parts["context"] == pytest.approx(parts["total"], abs=1e-5)


def test_runs_needing_attention_maps_are_refused_where_vitviz_cannot_compute_them(tmp_path,
                                                                                  tiny_cnn):
    """A timm ViT wrapped by hand declares no attention; one with timm's DiffAttention has a
    kind vitviz does not compute; a CNN has none: each refused in one line, before a tensor
    is made or a result stored (once: --moving-target crashed at torch.stack([]), and
    --frozen-context ran live attention and stored `frozen_context: true`)."""
    torch.manual_seed(0)
    by_hand = vitviz.wrap(_timm(), "fam_by_hand", size=32, prefix_tokens=1)
    diff = vitviz.from_timm(_timm(attn_layer="diff"), "fam_diff_attention")
    cache = ResultCache(tmp_path / "cache")
    cases = [(by_hand, "declares no attention modules"), (diff, r"yet \(DiffAttention\)"),
             (tiny_cnn, "declares no attention modules")]
    for model, reason in cases:
        layer = default_layer(model)
        for kind in ("moving_target", "frozen_context"):
            request = RunRequest(model.name, O.channel(layer, 0).spec()
                                 if model.architecture == "cnn" else O.neuron(layer, 0).spec(),
                                 (0,), "naive", {"steps": 2}, **{kind: True})
            with pytest.raises(AttentionUnsupported, match=reason) as refused:
                cached_result(request, cache, loader=lambda _: model)
            assert "\n" not in str(refused.value) and "supported:" in str(refused.value)
    assert cache.summaries() == {}
    with pytest.raises(AttentionUnsupported, match="probe"):
        MovingTargetProbe(by_hand, O.neuron("blocks.1.mlp.act", 0), 1, 2)


def test_attention_that_bypasses_vitviz_is_caught_not_recorded_as_held(tiny_vit):
    """A kind that fails to reach its modules (a library variant on its own path) would leave
    attention live under a frozen label: the pass is refused instead."""
    unreached = dataclasses.replace(tiny_vit, attention=AttentionKind(
        "unreached", (nn.MultiheadAttention,), lambda modules, attend: nullcontext()))
    with pytest.raises(AttentionUnsupported, match="on its own path"):
        with explicit_attention_mode(unreached):
            unreached.module(torch.rand(1, 3, 32, 32))


def test_another_network_on_a_shared_config_keeps_its_own_attention():
    """transformers' attention is chosen by the config, which two networks may share: while
    one computes by hand, the other still runs the library's own attention."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(**HF)
    first = vitviz.from_huggingface(transformers.ViTModel(config), PROCESSOR, "fam_shared_a")
    second = vitviz.from_huggingface(transformers.ViTModel(config), PROCESSOR, "fam_shared_b")
    images = torch.rand(2, 3, 32, 32)
    plain = second.module(images).last_hidden_state
    with explicit_attention_mode(first) as maps:
        first.module(images)
        shared = second.module(images).last_hidden_state
    assert set(maps) == {"layers.0.attention", "layers.1.attention"}
    assert torch.allclose(shared, plain, atol=1e-6)


def test_what_a_model_does_not_say_is_asked_for_in_one_line():
    torch.manual_seed(0)
    bare = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=2)
    with pytest.raises(ModelError, match=r"pass mean=\.\.\. and std=\.\.\."):
        vitviz.from_timm(bare)
    assert vitviz.from_timm(bare, "fam_bare", mean=(0.5,) * 3, std=(0.5,) * 3).prefix_tokens == 1
    with pytest.raises(ModelError, match="image processor"):
        vitviz.from_huggingface(transformers.ViTModel(transformers.ViTConfig(**HF)))
    with pytest.raises(ModelError, match="vitviz.wrap"):
        vitviz.from_timm(nn.Linear(2, 2))
    with pytest.raises(ModelError, match="without ':'"):
        vitviz.from_timm(_timm(), "timm:mine")


def test_a_missing_library_is_named_with_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ModelError, match=r'pip install "vitviz\[open_clip\]"'):
        vitviz.from_open_clip(nn.Linear(2, 2))
    with pytest.raises(ModelError, match=r'pip install "vitviz\[open_clip\]"'):
        parse_model_name("open_clip:ViT-B-32-nowhere:random")


# --- by name, from a Hugging Face hub cache in a temporary folder ---------------------------

COMMIT = "0" * 40


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache, and a function that puts a repository's files in it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VITVIZ_ALLOW_DOWNLOAD", raising=False)

    def snapshot(repo: str):
        folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(COMMIT)
        files = folder / "snapshots" / COMMIT
        files.mkdir(parents=True)
        return files

    return snapshot


def test_a_timm_name_loads_untrained_or_from_the_cache_and_never_downloads(hub):
    with pytest.raises(ModelError, match="Did you mean vit_tiny_patch16_224"):
        parse_model_name("timm:vit_tiny_patch16_22")
    untrained = load_model("timm:vit_tiny_patch16_224:random", "cpu")
    assert untrained.registry_name == "timm:vit_tiny_patch16_224:random" and untrained.random_init
    assert untrained.prefix_tokens == 1 and untrained.preprocessing.size == 224
    again = load_model("timm:vit_tiny_patch16_224:random", "cpu")
    assert torch.equal(again.module.cls_token, untrained.module.cls_token)  # a fixed seed
    assert model_weights("timm:vit_tiny_patch16_224:random").startswith("random-init (timm ")

    name = "timm:vit_tiny_patch16_224"
    with pytest.raises(WeightsUnavailable, match="not in the local cache") as missing:
        load_model(name, "cpu")
    assert str(huggingface_hub.constants.HF_HUB_CACHE) in str(missing.value)
    assert "VITVIZ_ALLOW_DOWNLOAD=1" in str(missing.value)
    assert model_weights(name) == "timm:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"

    state = {key: torch.randn_like(value) for key, value
             in untrained.module.state_dict().items()}
    safetensors.torch.save_file(state, hub("timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
                                / "model.safetensors")
    cached = load_model(name, "cpu")
    assert torch.equal(cached.module.cls_token, state["cls_token"]) and not cached.random_init
    assert cached.weights_id == model_weights(name) and cached.weights_id.startswith("sha256:")
    request = RunRequest(name, O.neuron("blocks.5.mlp.act", 0).spec(), (0,), "naive")
    assert request.config()["weights"] == cached.weights_id


def test_a_hugging_face_name_loads_from_the_cache_with_its_processor(hub):
    repo = "vitviz-tests/tiny-dinov2"
    with pytest.raises(WeightsUnavailable, match="huggingface-cli download vitviz-tests/tiny"):
        parse_model_name(f"hf:{repo}")
    with pytest.raises(ModelError, match="hf:ORG/NAME"):
        parse_model_name("hf:no-organisation")
    files = hub(repo)
    torch.manual_seed(1)  # not the seed of an untrained copy
    transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
        **HF, mlp_ratio=2, num_register_tokens=REGISTERS)).save_pretrained(files)
    (files / "preprocessor_config.json").write_text(json.dumps(
        {**PROCESSOR, "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
         "size": {"shortest_edge": 40}}))
    model = load_model(f"hf:{repo}", "cpu")
    assert model.name == f"hf:{repo}" and model.prefix_tokens == 1 + REGISTERS
    assert model.preprocessing.size == 32 and model.weights_id == model_weights(f"hf:{repo}")
    assert default_layer(model) == "encoder.layer.1.mlp.activation_fn"
    untrained = load_model(f"hf:{repo}:random", "cpu")
    assert untrained.random_init and untrained.registry_name == f"hf:{repo}:random"
    assert not torch.equal(untrained.module.embeddings.cls_token, model.module.embeddings.cls_token)
    assert ([info.shape for info in layer_table(untrained)]
            == [info.shape for info in layer_table(model)])


def test_the_operators_list_and_the_cache_key_take_the_family_names(hub):
    from ui.limits import load_limits

    limits = load_limits({"VITVIZ_MODELS_ALLOWED": "timm:vit_tiny_patch16_224:random, tiny_vit"})
    assert limits.serves("timm:vit_tiny_patch16_224:random")
    assert not limits.serves("timm:vit_tiny_patch16_224")
    config = RunRequest("timm:vit_tiny_patch16_224:random",
                        O.neuron("blocks.5.mlp.act", 0).spec()).config()
    assert config["model"] == "timm:vit_tiny_patch16_224:random"
    assert config["weights"].startswith("random-init (timm ")
    with pytest.raises(ModelError, match="OpenCLIP has no architecture"):
        parse_model_name("open_clip:ViT-Q-99:random")
    with pytest.raises(ModelError, match="open_clip:ARCH/TAG"):
        parse_model_name("nowhere:model")


def test_a_dashboard_link_takes_a_librarys_model_by_name(tmp_path, monkeypatch):
    from test_app import errors, open_page

    monkeypatch.setenv("VITVIZ_CACHE_DIR", str(tmp_path / "cache"))
    at = open_page("pages/Optimise.py", model="timm:deit_tiny_patch16_224:random",
                   layer="blocks.1.mlp.act", unit=2, steps=3)
    assert errors(at) == ""
    assert at.selectbox(key="optimise.model").value == "timm:deit_tiny_patch16_224"
    assert at.toggle(key="optimise.random").value
