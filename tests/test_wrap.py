"""Bring your own model: `vitviz.wrap` on modules vitviz has never seen.

timm's VisionTransformer is a ViT from another library (its own attention class, its own layer
names, optional register tokens), so nothing here can lean on torchvision's layout."""
import json

import pytest
import timm
import torch
from torch import nn

import vitviz
from vitviz.models.forward import activations
from vitviz.models.layers import default_layer, find_layer, layer_table
from vitviz.models.loaded import ModelError
from vitviz.models.registry import load_model
from vitviz.quality import metrics
from vitviz.rendering import objectives as O
from vitviz.rendering.loop import optimise
from vitviz.store.cache import ResultCache
from vitviz.store.runs import RunRequest

REGISTERS = 4
HIDDEN = "blocks.1.mlp.act"


def timm_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             depth=2, embed_dim=32, num_heads=2, reg_tokens=REGISTERS,
                             num_classes=10)


@pytest.fixture
def wrapped():
    return vitviz.wrap(timm_vit(), "timm_vit_regs", size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                       prefix_tokens=1 + REGISTERS)


def test_a_wrapped_timm_vit_is_a_model_by_name(wrapped):
    assert load_model("timm_vit_regs") is wrapped
    info = find_layer(wrapped, HIDDEN)
    assert info.layout == "tokens" and info.units == 128
    assert all(not p.requires_grad for p in wrapped.module.parameters())


def test_objectives_skip_the_declared_prefix_tokens(wrapped):
    images = torch.rand(2, 3, 32, 32)
    acts = activations(wrapped, wrapped.to_input(images), [HIDDEN])
    assert acts.prefix_tokens == 1 + REGISTERS
    expected = acts[HIDDEN][:, 1 + REGISTERS:, 7].mean(dim=1)
    assert torch.allclose(O.neuron(HIDDEN, 7).target(acts, 2), expected)
    with_cls_only = acts[HIDDEN][:, 1:, 7].mean(dim=1)
    assert not torch.allclose(expected, with_cls_only)  # the registers would have counted


def test_the_loop_optimises_and_records_the_declared_patch_tokens(wrapped):
    # The loop once handed objectives a plain dict, which says nothing of the model's layout:
    # registers were averaged in with the patches, in the objective and in the recorded curve.
    records = list(optimise(wrapped, O.neuron(HIDDEN, 7), [0, 1], "naive", steps=2))
    final = records[-1]
    acts = activations(wrapped, wrapped.to_input(final.images), [HIDDEN])
    expected = acts[HIDDEN][:, 1 + REGISTERS:, 7].mean(dim=1)
    assert torch.allclose(torch.tensor(final.activation), expected, atol=1e-6)
    assert not torch.allclose(expected, acts[HIDDEN][:, 1:, 7].mean(dim=1), atol=1e-4)


def test_visualising_a_wrapped_vit_raises_the_activation_of_most_units(wrapped):
    units = list(range(0, 128, 8))  # 16 units in one batch
    result = vitviz.visualise(wrapped, HIDDEN, unit=units, seeds=list(range(len(units))),
                              preset="naive", steps=12)
    assert result.images[0].shape == (32, 32, 3)
    rose = [curve[-1] > curve[0] for curve in result.activation]
    assert sum(rose) / len(rose) >= 0.9, rose


def test_the_cache_key_names_the_weights_not_only_the_name(tmp_path):
    cache = ResultCache(tmp_path)
    first = vitviz.wrap(timm_vit(0), "timm_vit_swap", size=32, prefix_tokens=1 + REGISTERS)
    a = vitviz.visualise(first, HIDDEN, unit=3, preset="naive", steps=3, cache=cache)
    second = vitviz.wrap(timm_vit(1), "timm_vit_swap", size=32, prefix_tokens=1 + REGISTERS)
    b = vitviz.visualise(second, HIDDEN, unit=3, preset="naive", steps=3, cache=cache)
    assert a.config["weights"] != b.config["weights"]
    assert len(cache.summaries()) == 2  # the second module was not served the first's result
    request = RunRequest("timm_vit_swap", O.neuron(HIDDEN, 3).spec(), (0,), "naive", {"steps": 3})
    assert request.config()["weights"] == second.weights_id


class SharedReLU(nn.Module):
    """Like a torchvision ResNet bottleneck: one ReLU module called on 64, 64, then 256 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 256, 1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))

    def forward(self, x):
        return self.head(self.relu(self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))))


def test_a_module_called_several_times_is_read_at_its_last_call_everywhere():
    torch.manual_seed(0)
    model = vitviz.wrap(SharedReLU(), "shared_relu", size=16)
    assert find_layer(model, "relu").units == 256
    # The optimiser and the metrics read the same call: unit 200 exists only in the last one.
    result = vitviz.visualise(model, "relu", unit=200, preset="naive", steps=3)
    image = torch.from_numpy(result.images[0]).permute(2, 0, 1)[None].float() / 255
    figures = metrics.robust_figures(model, "relu", [200], image)
    assert 1 <= figures["robust_rank"][0] <= 256


def test_bad_wraps_name_the_fix():
    with pytest.raises(ModelError, match="cannot name a wrapped model"):
        vitviz.wrap(nn.Linear(2, 2), "vit_b_16", size=32)
    with pytest.raises(ModelError, match="size must be"):
        vitviz.wrap(nn.Linear(2, 2), "mine", size=0)
    with pytest.raises(ModelError, match="takes an nn.Module"):
        vitviz.wrap(lambda x: x, "mine", size=32)
    vitviz.wrap(nn.Conv2d(3, 4, 3), "mine_conv", size=16)
    with pytest.raises(ModelError, match="no random-init variant"):
        load_model("mine_conv:random")


MODEL_FILE = '''
import timm, torch, vitviz

def build():
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                            depth=2, embed_dim=32, num_heads=2, num_classes=10)
    return vitviz.wrap(net, "file_vit", size=32, prefix_tokens=1)

build()  # registering at import is what VITVIZ_MODELS files do
'''


def cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vitviz", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_the_cli_takes_a_model_from_a_file_and_from_vitviz_models(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MODEL_FILE)
    done = cli("run", "--model", f"{path}:build", "--layer", HIDDEN, "--unit", "2",
               "--preset", "naive", "--steps", "3", "--no-metrics", "--out", str(tmp_path / "o"),
               "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    listed = cli("models", env={"VITVIZ_MODELS": str(path)})
    assert listed.returncode == 0 and "file_vit" in listed.stdout
    wrong = cli("run", "--model", f"{path}:nothing", "--out", str(tmp_path / "o2"))
    assert wrong.returncode == 2 and "has no function nothing()" in wrong.stderr


def test_the_dashboard_offers_the_operators_models(tmp_path, monkeypatch):
    from test_app import errors, open_page

    path = tmp_path / "my_models.py"
    path.write_text(MODEL_FILE)
    monkeypatch.setenv("VITVIZ_MODELS", str(path))
    monkeypatch.setenv("VITVIZ_CACHE_DIR", str(tmp_path / "cache"))
    at = open_page("pages/Optimise.py", model="file_vit", layer=HIDDEN, unit=2, steps=3)
    assert errors(at) == ""
    assert at.selectbox(key="optimise.model").value == "file_vit"


def test_an_exported_model_file_runs_from_the_cli_with_its_hidden_layers_readable(tmp_path):
    """A .pt2 file needs no Python of the user's; its module tree, names and gradients survive."""
    module = timm_vit(seed=3)
    path = vitviz.save_exported(module, tmp_path / "exported_vit.pt2", size=32,
                                mean=(0.5,) * 3, std=(0.5,) * 3, prefix_tokens=1 + REGISTERS)
    loaded = vitviz.load_exported(path)
    assert loaded.registry_name == "exported_vit" and loaded.prefix_tokens == 1 + REGISTERS
    images = torch.rand(3, 3, 32, 32)
    ours = activations(loaded, loaded.normalise(images), [HIDDEN])[HIDDEN]
    theirs = activations(vitviz.wrap(module, "exported_vit_source", size=32, mean=(0.5,) * 3,
                                     std=(0.5,) * 3, prefix_tokens=1 + REGISTERS),
                         loaded.normalise(images), [HIDDEN])[HIDDEN]
    assert ours.shape == (3, 1 + REGISTERS + 16, 128) and torch.allclose(ours, theirs, atol=1e-5)

    done = cli("run", "--model", str(path), "--layer", HIDDEN, "--unit", "2", "--seeds", "0", "1",
               "--preset", "naive", "--steps", "4", "--no-metrics", "--out", str(tmp_path / "o"),
               "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "result.json").read_text())
    curve = summary["activation"][0]
    assert curve[-1] > curve[0], "the activation did not rise through the exported program"
    listed = cli("models", env={"VITVIZ_MODELS": str(path)})
    assert listed.returncode == 0 and "exported_vit" in listed.stdout


def test_torchscript_and_foreign_files_are_refused_with_the_way_out(tmp_path):
    scripted = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    refused = cli("layers", "--model", str(scripted))
    assert refused.returncode == 2 and "vitviz.save_exported" in refused.stderr
    assert "Traceback" not in refused.stderr
    foreign = tmp_path / "foreign.pt2"
    foreign.write_bytes(b"not an archive")
    refused = cli("layers", "--model", str(foreign))
    assert refused.returncode == 2 and "not a torch.export archive" in refused.stderr
    undeclared = tmp_path / "undeclared.pt2"
    program = torch.export.export(nn.Linear(2, 2), (torch.randn(2, 2),))
    torch.export.save(program, undeclared)
    with pytest.raises(ModelError, match="does not say how to feed"):
        vitviz.load_exported(undeclared)
    fixed = tmp_path / "fixed.pt2"
    program = torch.export.export(timm_vit(), (torch.randn(2, 3, 32, 32),))
    torch.export.save(program, fixed, extra_files={"vitviz.json": json.dumps(
        {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "prefix_tokens": 5})})
    with pytest.raises(ModelError, match="batches of exactly 2"):
        vitviz.load_exported(fixed)


def test_a_wrapped_model_declares_its_layer_roles_and_the_dashboard_recommends_them():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(nn.Linear(3, 8), nn.GELU(), nn.Linear(8, 3))

        def forward(self, images):
            return self.blocks(images.flatten(2).transpose(1, 2))

    plain = vitviz.wrap(Tokens(), "roles_default", size=8, architecture="vit")
    assert not [info for info in layer_table(plain) if info.role]  # not torchvision's names
    model = vitviz.wrap(Tokens(), "roles_declared", size=8, architecture="vit",
                        layer_roles=[(r"blocks\.1", "mlp_hidden")])
    assert [info.name for info in layer_table(model) if info.recommended] == ["blocks.1"]
    assert default_layer(model) == "blocks.1"
    with pytest.raises(ModelError, match="unknown layer roles"):
        vitviz.wrap(Tokens(), "roles_bad", size=8, layer_roles=[("blocks", "neuron")])
