"""The benchmark scripts' settings stay valid as the library changes (they run for hours)."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from vitviz.rendering.presets import DEFAULT_PRESET, get_preset
from vitviz.rendering.transforms import build_transforms

from conftest import VIT_HIDDEN

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    # As `python bench/NAME.py` runs it: with bench/ on the path, for the modules it shares.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWEEP = load("quality_sweep")


@pytest.mark.parametrize("variant", list(SWEEP.VARIANTS))
def test_every_sweep_variant_is_a_valid_preset(variant):
    preset = get_preset(DEFAULT_PRESET).with_overrides(**SWEEP.VARIANTS[variant])
    preset.check()
    build_transforms(preset.transforms)
    default = get_preset(DEFAULT_PRESET).knobs()
    knobs = preset.knobs()
    changed = {k for k in {*knobs, *default} if knobs.get(k) != default.get(k)}
    assert (variant == DEFAULT_PRESET) == (not changed), changed


def test_the_speed_benchmark_measures_peak_flops_and_steps_on_the_tiny_model(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "speed.json"
    done = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--model", "tiny_vit",
                           "--layer", "encoder.layers.encoder_layer_1.mlp.1", "--unit", "3",
                           "--warmup", "1", "--steps", "2", "--rounds", "2", "--batches", "1",
                           "--presets", DEFAULT_PRESET, "--variants", "fp32", "bf16", "bf16+fused",
                           "--no-contenders", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["peak_gflops"]["fp32"] > 0 and figures["peak_gflops"]["bf16"] > 0
    assert [row["variant"] for row in figures["batches"]] == ["fp32", "bf16", "bf16+fused"]
    for row in figures["batches"]:
        assert len(row["s_per_step"]) == 2 and row["gflop_per_step"] > 0
        assert 0 < row["fraction_of_peak"] < 1 and row["images_steps_per_s"] > 0
    assert figures["datasheet_bf16_gflops"] is None  # a CPU has no datasheet entry


# Cards by the name torch.cuda.get_device_name gives, and their dense bf16 peak in TFLOP/s
# from NVIDIA's datasheets (half the "with sparsity" figure).
CARDS = {
    "NVIDIA H100 80GB HBM3": 989, "NVIDIA H100 PCIe": 756, "NVIDIA H100 NVL": 835,
    "NVIDIA H200": 989, "NVIDIA H200 NVL": 835, "NVIDIA GH200 480GB": 989,
    "NVIDIA A100-SXM4-80GB": 312, "NVIDIA A100-PCIE-40GB": 312, "NVIDIA L40S": 362,
    "NVIDIA L4": 121, "NVIDIA A10G": 70, "NVIDIA A10": 125, "NVIDIA GeForce RTX 4090": 165,
    "NVIDIA GeForce RTX 3090": 71,
}


def test_the_prior_cost_benchmark_times_the_default_against_it_without_the_prior():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCH / "prior_cost.py"), "--model", "tiny_vit",
                           "--layer", VIT_HIDDEN, "--unit", "3", "--batches", "2",
                           "--warmup", "1", "--steps", "2", "--rounds", "1"],
                          capture_output=True, text=True, check=True)
    assert f"photo pass ({VIT_HIDDEN}" in done.stdout
    assert re.search(r"batch 2: default [\d.]+ s/step, without the photo prior [\d.]+ s/step; "
                     r"the default takes [\d.]+x", done.stdout), done.stdout


def test_gpu_peaks_are_read_by_the_cards_name_and_sxm_and_pcie_differ():
    speed = load("speed")
    for name, tflops in CARDS.items():
        assert speed.datasheet_bf16_peak(name) == tflops * 1000, name
    # The first fragment found wins: each entry is reached by a card named after it, not taken
    # by a shorter name listed before it (L4 before L40S, H100 before H100 PCIe, A10 before A100).
    for fragment, tflops in speed.DATASHEET_BF16_TFLOPS:
        assert speed.datasheet_bf16_peak(f"NVIDIA {fragment}") == tflops * 1000, fragment
    sxm, pcie = (speed.datasheet_bf16_peak(f"NVIDIA H100 {part}") for part in ("80GB HBM3", "PCIe"))
    assert sxm > pcie
    assert speed.datasheet_bf16_peak("Some Future GPU") is None
    assert speed.datasheet_bf16_peak("CPU, 16 threads") is None


def test_a_runs_time_counts_its_coarse_steps_at_their_own_price():
    speed = load("speed")
    assert speed.run_seconds(100, 50, 1.0, 0.25) == 50 * 0.25 + 50 * 1.0
    assert speed.run_seconds(30, 50, 1.0, 0.25) == 30 * 0.25
    assert speed.run_seconds(30, 0, 1.0, 0.25) == 30.0


def test_the_fused_variant_times_pytorchs_kernel_in_place_of_vitvizs_cpu_path():
    import torch

    from vitviz.models.fast import attention as fast_attention

    speed = load("speed")
    q, k, v = (torch.randn(1, 2, 65, 16).bfloat16() for _ in range(3))
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert not torch.equal(fast_attention.attend(q, k, v), fused)
    with speed.variant_paths("bf16+fused"):
        assert torch.equal(fast_attention.attend(q, k, v), fused)
    with speed.variant_paths("bf16"):
        assert not torch.equal(fast_attention.attend(q, k, v), fused)


def test_the_conv_variant_times_the_convolution_in_place_of_the_matrix_product(tiny_vit,
                                                                              monkeypatch):
    import torch

    from vitviz.models.fast import patches as fast_patches

    speed = load("speed")
    conv = tiny_vit.module.conv_proj
    x = torch.randn(2, 3, 32, 32)
    calls = []
    own = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d",
                        lambda *args, **kwargs: calls.append(1) or own(*args, **kwargs))
    with fast_patches.fast_patch_embedding(tiny_vit.module):
        with speed.variant_paths("bf16+conv"):
            via_conv = conv(x)
        assert len(calls) == 1
        via_matmul = conv(x)
        assert len(calls) == 1, "outside the variant the matrix product runs"
    assert torch.allclose(via_conv, via_matmul, atol=1e-5)


def test_a_device_bundle_gives_the_report_the_same_photos_and_weights(tmp_path, monkeypatch):
    import torch

    from vitviz.data import photos as data
    from vitviz.models import registry as models
    from vitviz.models.zoo import dinov2

    device_report = load("device_report")
    photos = data.photo_set_id()
    weights = models.load_model("mobilenet_v2", "cpu").module.state_dict()
    device_report.bundle(tmp_path, wheels=False)
    # Stand-ins for the packages a device lacks: the bundle must be all the loaders read.
    for module, name in ((dinov2, "build_dinov2_vits14"), (models, "_dinov2_file"),
                         (models, "_mobilenet_file")):
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(data, "_SOURCES", dict(data._SOURCES))
    device_report.use_bundle(tmp_path)
    assert all(str(tmp_path) in source.folder for source in data._SOURCES.values())
    assert data.photo_set_id() == photos
    carried = models.load_model("mobilenet_v2", "cpu").module.state_dict()
    assert models._mobilenet_file() == tmp_path / device_report.MOBILENET
    for key, value in weights.items():  # fp16: equal to about 3 significant digits
        if value.is_floating_point():
            assert torch.allclose(carried[key], value, rtol=2e-3, atol=1e-4), key
    assert "carried" in models.load_model("dinov2_vits14", "cpu").provenance["file"]


def test_the_atlas_overhead_benchmark_times_both_and_the_atlas_parts(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "overhead.json"
    done = subprocess.run([sys.executable, str(BENCH / "atlas_overhead.py"), "--model",
                           "tiny_vit", "--units", "4", "--steps", "3", "--batch-units", "2",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    seconds = figures["seconds"]
    assert seconds["loop alone"] > 0 and seconds["atlas"] > 0
    # Every part of the atlas was timed, each inside its whole (the writes overlap the steps).
    parts = [value for label, value in seconds.items() if label.startswith("atlas: ")]
    assert len(parts) == 3 and all(0 < v <= seconds["atlas"] for v in parts)
    assert figures["ratio"] == figures["units_per_hour"]["atlas"] / figures["units_per_hour"][
        "loop alone"]


def test_the_alignment_benchmark_finds_a_change_along_the_queries_and_a_shared_one():
    alignment = load("accentuation_alignment")
    import torch
    generator = torch.Generator().manual_seed(0)
    along, across = torch.eye(8)[0], torch.eye(8)[1]
    # The queries lean along `along`; the start photos' direction points across them.
    leans = [along + 0.3 * torch.randn(20, 8, generator=generator) for _ in range(2)]
    starts = torch.stack([across.expand(9, 8), -across.expand(9, 8)])
    turned = starts + torch.stack([along.expand(9, 8), -along.expand(9, 8)])
    views = [{"start photos": starts, "accentuated exemplars": turned,
              **{name: starts for name in list(alignment.CHANGES)[1:]}} for _ in leans]
    found = alignment.layer_figures(views, leans)
    rows = found["variants"]
    assert found["turn"] == pytest.approx(1.0) and abs(found["cos_start_queries"]) < 0.3
    assert rows["accentuated exemplars"]["cos_turn_queries"] > 0.9
    assert rows["accentuated exemplars"]["above_starts"] > 0.2
    assert rows["change x2"]["above_starts"] == 0  # unchanged pictures score as their photos
    # Both units changed alike: all of the change is shared, and taking it out restores w.
    assert found["shared_share"] == pytest.approx([1.0, 1.0])
    assert rows[alignment.LESS_COMMON]["above_starts"] == 0


def test_the_archive_benchmark_finds_the_archive_smaller_than_a_png_per_picture(tmp_path):
    import json
    import subprocess
    import sys

    import numpy as np

    from vitviz.store.cache import ResultCache
    from vitviz.store.results import Result

    from conftest import stroke_picture

    rng = np.random.default_rng(0)
    picture = lambda: stroke_picture(rng)  # noqa: E731
    cache = ResultCache(tmp_path / "cache")
    for seed in range(2):
        final = [picture()]
        cache.put(f"k{seed}", Result(
            config={"seeds": [seed], "objective": {"type": "neuron"}, "model": "m",
                    "preset": {"name": "robust"}}, model={"name": "m"}, images=final,
            checkpoints={0: [picture()], 4: [picture()], 8: [picture()], 12: final},
            steps=list(range(13)), activation=[[0.0] * 13], loss=[[0.0] * 13]))
    out = tmp_path / "archive.json"
    done = subprocess.run([sys.executable, str(BENCH / "archive_size.py"), "--cache",
                           str(tmp_path / "cache"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["runs"] == 2 and 0 < figures["size_ratio"] < 0.8
    assert figures["encode_ratio"] > 0


def test_the_overlap_benchmark_finds_shared_photos_in_the_standard_set_and_none_disjoint(
        tiny_vit):
    overlap = load("query_overlap").overlap
    standard = overlap(tiny_vit, [VIT_HIDDEN], "0-3")
    disjoint = overlap(tiny_vit, [VIT_HIDDEN], "0-3", "photo_disjoint")
    assert standard["units"] == disjoint["units"] == 4
    assert standard["shared"]["maximising"] > 0 and standard["shared"]["minimising"] > 0
    assert disjoint["shared"] == {"maximising": 0, "minimising": 0}
    assert all(1 <= photos <= 20 for photos in standard["photos"])


def test_the_overlap_benchmark_scores_the_exemplars_as_the_judge_does_and_keeps_each_side_apart(
        tiny_vit):
    from conftest import VIT_HIDDEN

    from vitviz.data import photo_sets
    from vitviz.quality import judge

    bench = load("query_overlap")
    found = bench.exemplar_scores(tiny_vit, [VIT_HIDDEN], "0-3", "efficientnet_lite0")
    pool = judge.pool_for(photo_sets.examples_for(tiny_vit, VIT_HIDDEN), "efficientnet_lite0")
    for query_set in judge.QUERY_SETS:
        figures = judge.mis(pool, range(4), query_set=query_set)
        assert found[query_set]["score"] == pytest.approx(figures["exemplars"])
        assert found[query_set]["margin"] == pytest.approx(figures["exemplars_margin"])
    for unit in range(4):
        task = judge.tasks(pool, unit, "standard")
        high, low = bench.side_disjoint_references(pool, unit, task)
        for references, queries in ((high, task.high), (low, task.low)):
            assert len(references) == judge.REFERENCES
            assert not {pool.photo_of(k) for k in references} & {pool.photo_of(k) for k in queries}
            assert not set(references) & task.excluded_keys


def test_the_reference_benchmark_builds_each_set_from_the_right_pictures_and_pairs_them(
        tiny_vit, tmp_path):
    import torch

    from conftest import VIT_HIDDEN

    from vitviz.quality import judge
    from vitviz.store.cache import ResultCache

    bench = load("picture_references")
    # Picture s, view v carries the value 10 s + v in every feature.
    views = (10 * torch.arange(4.0)[:, None] + torch.arange(5.0))[:, :, None].expand(4, 5, 3)
    sets = {name: refs[:, 0].tolist() for name, refs in bench.reference_sets(views).items()}
    assert sets[bench.BASELINE] == [0, 10, 1, 11, 2, 12, 3, 13, 4]
    assert sets["2 other pictures: 2 wholes, 7 quarters"] == [20, 30, 21, 31, 22, 32, 23, 33, 24]
    assert sets["4 pictures, wholes only"] == [0, 10, 20, 30]
    assert sets["4 pictures: 4 wholes first, 9 in all"] == [0, 10, 20, 30, 1, 11, 21, 31, 2]

    found = bench.judge_reference_sets(tiny_vit, {VIT_HIDDEN: [0, 1, 2]}, 4,
                                       ResultCache(tmp_path), "efficientnet_lite0", steps=2)
    assert set(found) == set(judge.QUERY_SETS)
    for rows in found.values():
        assert set(rows) == set(sets)
        assert rows[bench.BASELINE]["paired"] == 0 and rows[bench.BASELINE]["paired_se"] == 0
        assert all(0 <= row["score"] <= 1 for row in rows.values())


def test_the_beside_photos_benchmark_tells_more_references_from_what_pictures_add():
    from test_judge import complementary_pool

    bench = load("beside_photos")
    pool, up, down = complementary_pool()
    rows = bench.unit_rows(pool, [0, 1], [(up, down), (down, up)], count=2)
    first = {name: values[0] for name, values in rows.items()}
    # Twice the exemplars point the same way as 9 (the next 9 a side are neutral here), and
    # another unit's pictures point against this unit's: neither wins what the pair does.
    assert first["natural exemplars (9 a side)"] == first["natural exemplars (18 a side)"] == 0.5
    assert first["pictures"] == first["another unit's pictures with the exemplars"] == 0.5
    assert first["pictures with the exemplars (together)"] == 1.0
    assert first["cos(w pictures, w exemplars)"] == pytest.approx(0.0, abs=1e-6)


def test_the_beside_photos_benchmark_mixes_exemplars_with_pictures_in_pixels():
    import torch.nn.functional as F

    from test_judge import complementary_pool

    bench = load("beside_photos")
    pool, up, down = complementary_pool()
    # Each view's "image" is its judge feature as one pixel; the judge reads the pixel back.
    image = lambda features: features[:, :, None, None]
    rows = bench.blend_rows(pool, [0, 1], lambda keys: image(pool.features(keys)),
                            [(image(up), image(down)), (image(down), image(up))], [0.5],
                            lambda images: F.normalize(images.flatten(1), dim=1), count=2)
    first = {name: values[0] for name, values in rows.items()}
    # Half and half, one image carries what each kind tells the judge alone; another unit's
    # pictures pull against this unit's exemplars.
    assert first[bench.UNMIXED] == 0.5
    assert first["exemplars mixed 0.5 with this unit's pictures"] == 1.0
    assert first["exemplars mixed 0.5 with another unit's pictures"] == 0.5


def test_the_beside_photos_grid_shows_each_exemplar_unchanged_then_mixed():
    import numpy as np
    import torch

    from vitviz.rendering.picture_mix import Mixed

    bench = load("beside_photos")
    photos = torch.zeros(4, 3, 8, 8)
    made = Mixed(photos, photos + 0.5, [0.3, 0.0, 0.1, 0.2], [0.1] * 4, [0.9, 0.1, 0.5, 0.6])
    row = bench.grid_row(np.zeros((8, 8, 3), np.uint8), "block 2, #7", made)
    assert [caption for _, caption in row] == [
        "block 2, #7", "photo: 0.1", "30% mixed: 0.9", "photo: 0.1", "unchanged",
        "photo: 0.1", "10% mixed: 0.5"]
    assert row[2][0].max() == 128 and row[1][0].max() == 0
    sheet = bench.draw_grid([row, row[:3]], tile=16)
    assert sheet.size == (7 * 16, 2 * (16 + 14))


def test_the_sweep_draws_every_variant_beside_the_units_photos(tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    from vitviz.surveys.report import GRID_TILE

    grid, out = tmp_path / "grid.png", tmp_path / "sweep.json"
    done = subprocess.run([sys.executable, str(BENCH / "quality_sweep.py"), "--model", "tiny_vit",
                           "--blocks", "1", "--units", "0,2", "--seeds", "2", "--steps", "2",
                           "--variants", DEFAULT_PRESET, "copies 2", "--judge", "efficientnet_lite0",
                           "--cache", str(tmp_path / "cache"), "--out", str(out), "--grid", str(grid)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(json.loads(out.read_text())["presets"]) == [DEFAULT_PRESET, "copies 2"]
    width, height = Image.open(grid).size
    # A row per unit; its 3 strongest photos, then per variant 2 maximising seeds and a minimising one.
    tile = GRID_TILE
    assert height == 22 + 2 * tile and width == 120 + (3 * tile + tile // 6) + 2 * (3 * tile + tile // 6)


def test_the_alive_benchmark_runs_every_preset_with_the_knobs_it_is_given(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "alive.json"
    command = [sys.executable, str(BENCH / "alive.py"), "--model", "tiny_vit", "--blocks", "0",
               "1", "--per-block", "2", "--steps", "2", "--cache", str(tmp_path / "cache")]
    done = subprocess.run(command + ["--knobs", '{"exemplar_stats": 0}', "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["robust"]
    assert figures["knobs"] == {"exemplar_stats": 0} and figures["units"] == 4
    assert set(figures["alive_by_block"]) == {"0", "1"}
    assert sum(figures["alive_by_block"].values()) == round(figures["alive"] * 4)
    past = [row["robust"] > row["plain_colour"] for row in figures["per_unit"]]
    assert figures["past_plain_colour"] == sum(past) / 4
    assert f"{sum(past)}/4 past a plain colour" in done.stdout
    # The knobs reach the runs: one that no preset has stops the benchmark, naming it.
    refused = subprocess.run(command + ["--knobs", '{"no_such_knob": 1}'], capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode != 0 and "no_such_knob" in refused.stderr
