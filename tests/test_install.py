"""vitviz as an installed package: importable from any folder, a `vitviz` command, and a library
that never imports Streamlit (checked in a fresh interpreter, where nothing else loaded it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
NOTEBOOK = """
import json, sys
import vitviz
result = vitviz.visualise("tiny_vit", unit=3, preset="naive", steps=3)
print(json.dumps({"file": vitviz.__file__, "shape": list(result.images[0].shape),
                  "streamlit": "streamlit" in sys.modules, "plotly": "plotly" in sys.modules}))
"""


def clean_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "VITVIZ_CACHE_DIR": str(tmp_path / "cache")}


def test_the_notebook_snippet_works_from_any_folder_without_streamlit(tmp_path):
    done = subprocess.run([sys.executable, "-c", NOTEBOOK], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["shape"] == [32, 32, 3]  # naive: the model's own input size
    assert not facts["streamlit"] and not facts["plotly"]


@pytest.mark.skipif(not (BIN / "vitviz").exists(), reason="vitviz is not installed (make setup)")
def test_the_vitviz_command_is_installed(tmp_path):
    done = subprocess.run([str(BIN / "vitviz"), "models"], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tiny_vit" in done.stdout and "dinov2_vits14" in done.stdout
