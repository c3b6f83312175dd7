import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitviz.models.forward import activations
from vitviz.models.hooks import run_and_capture
from vitviz.models.registry import load_model
from vitviz.quality import judge
from vitviz.rendering.precision import network, resolve_precision

VIT_HIDDEN = "encoder.layers.encoder_layer_1.mlp.1"
# The default preset without its exemplar-statistics prior (the default before 2026-12-07): the
# base of tests about another prior or knob, measured against a picture held to nothing.
NO_PHOTO_PRIOR = {"exemplar_stats": 0.0, "priors_yield": False}


def stroke_picture(rng, size: int = 96) -> np.ndarray:
    """A picture [size, size, 3] uint8 with the fine strokes of a real one: coarse noise,
    upsampled, plus a fine grain of 10 levels on average."""
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
    return np.clip(coarse + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)


def fast_and_plain_passes(model) -> tuple[tuple, tuple]:
    """(activation, input gradient) of VIT_HIDDEN through the library's read, with its fast
    paths, and through the modules' own forwards (the same capture without them)."""
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    results = []
    for fast in (True, False):
        x = images.clone().requires_grad_(True)
        inputs = model.normalise(x)
        acts = (activations(model, inputs, [VIT_HIDDEN]) if fast
                else run_and_capture(model.module, inputs, [VIT_HIDDEN], True))
        acts[VIT_HIDDEN][:, 1:, 5].mean().backward()
        results.append((acts[VIT_HIDDEN].detach(), x.grad))
    return results[0], results[1]


def step_passes(passes: list, preset) -> list:
    """Of what a run's forward passes recorded, those of its steps: two a step (the augmented
    copies, then the clean image) and a last clean pass. The passes before them (the photo
    prior reading the unit's photo views, and its layer's photo statistics unless an earlier
    run left them in memory) depend on what ran before, so they are left out."""
    return passes[-(2 * preset.steps + 1):]


def running_network(model, preset) -> torch.nn.Module:
    """The network a run of `preset` feeds its images to (a bf16 copy where it runs in bf16)."""
    return network(model, resolve_precision(preset.precision, model.device))[0].module


def assert_same_pass(fast: tuple, plain: tuple) -> None:
    (act, grad), (ref_act, ref_grad) = fast, plain
    assert torch.allclose(act, ref_act, atol=1e-5)
    assert ref_grad.abs().sum() > 0 and torch.allclose(grad, ref_grad, atol=1e-6, rtol=1e-4)


@pytest.fixture(scope="session")
def tiny_vit():
    return load_model("tiny_vit", "cpu")


@pytest.fixture(scope="session")
def tiny_cnn():
    return load_model("tiny_cnn", "cpu")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Keep converted weights and caches of tests out of the user's home, shared per session."""
    home = tmp_path_factory.getbasetemp() / "vitviz_home"
    monkeypatch.setenv("VITVIZ_HOME", str(home))
    monkeypatch.setenv("VITVIZ_CACHE_DIR", str(home / "cache"))


def brightness_embed(images, judge_name=judge.DEFAULT_JUDGE, batch_size=32):
    """A stand-in judge (`judge.embed`) that sees only brightness, placed as test_judge's
    `ranked_layer` places photos: brightness b sits where photo number 30 b does."""
    angle = images.float().mean(dim=(1, 2, 3)).clamp(0, 1) * (torch.pi / 2)
    return F.normalize(torch.stack([angle.cos(), angle.sin()], dim=1), dim=1)


@pytest.fixture
def bright_judge(monkeypatch):
    # The photos' judge features are kept per process: none may outlive the stand-in.
    judge._builtin_views.cache_clear()
    monkeypatch.setattr(judge, "embed", brightness_embed)
    yield
    judge._builtin_views.cache_clear()
