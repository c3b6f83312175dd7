import pytest

from vitviz.models import load_model

VIT_HIDDEN = "encoder.layers.encoder_layer_1.mlp.1"


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
