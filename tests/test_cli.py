import json
import subprocess
import sys

from conftest import VIT_HIDDEN


def vitviz(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vitviz", *args], capture_output=True, text=True,
                          timeout=300)


def test_run_writes_pngs_and_json(tmp_path):
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "5",
                  "--seeds", "0", "1", "--steps", "6", "--out", str(tmp_path / "out"),
                  "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["config"]["objective"] == {"type": "neuron", "layer": VIT_HIDDEN, "unit": 5,
                                            "tokens": "patch"}
    assert saved["config"]["vitviz_version"] and saved["model"]["weights"]
    assert len(saved["activation"]) == 2
    assert (tmp_path / "out" / "seed0.png").is_file() and (tmp_path / "out" / "seed1.png").is_file()
    again = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "5",
                   "--seeds", "0", "1", "--steps", "6", "--out", str(tmp_path / "out2"),
                   "--cache", str(tmp_path / "cache"))
    assert "served from the result cache" in again.stderr


def test_layers_prints_the_table_with_shapes():
    done = vitviz("layers", "--model", "tiny_vit")
    assert done.returncode == 0
    assert f"{VIT_HIDDEN} " in done.stdout and "[17, 64]" in done.stdout
    assert "recommended" in done.stdout


def test_bad_input_gives_one_line_error_and_exit_2(tmp_path):
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "64",
                  "--out", str(tmp_path), "--no-cache")
    assert done.returncode == 2 and "valid values are 0 to 63" in done.stderr
    assert "Traceback" not in done.stderr
    done = vitviz("run", "--model", "tiny_vit", "--layer", "encoder.layer.1.mlp", "--out", str(tmp_path))
    assert done.returncode == 2 and "Closest matches" in done.stderr
    done = vitviz("layers", "--model", "vit_b_17")
    assert done.returncode == 2 and "Did you mean" in done.stderr


def test_report_compares_presets_and_writes_table_and_grid(tmp_path):
    done = vitviz("report", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--units", "0-2",
                  "--seeds", "2", "--steps", "4", "--out", str(tmp_path / "report"),
                  "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(summary["presets"]) == {"naive", "robust"}
    for figures in summary["presets"].values():
        assert figures["consistency"]["units"] == 3 and figures["consistency"]["seeds"] == 2
        assert len(figures["per_image"]["rank"]) == 6
    assert "<table>" in (tmp_path / "report" / "index.html").read_text()
    from PIL import Image

    assert Image.open(tmp_path / "report" / "grid.png").size == (2 * 2 * 96 + 24, 3 * 96)
