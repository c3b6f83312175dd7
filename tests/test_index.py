"""The activation index: what it keeps equals a brute-force pass over the same images, after an
interruption and after new files arrive."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vitviz.data.index import ActivationIndex, build_index
from vitviz.data.photos import centre_square, read_rgb
from vitviz.models.drive import capture_drives
from vitviz.models.forward import activations
from vitviz.models.tokens import unit_values

from conftest import VIT_HIDDEN

K = 3


def write_images(folder, start, count):
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40 + i % 7, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i:03d}.{'png' if i % 3 else 'jpg'}")


def brute_force(model, folder):
    paths = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg") and
                   p.name != "broken.jpg")
    images = torch.stack([centre_square(read_rgb(p), model.preprocessing.size) for p in paths])
    with torch.no_grad(), capture_drives(model.module, [VIT_HIDDEN]) as drives:
        acts = activations(model, model.normalise(images), [VIT_HIDDEN])[VIT_HIDDEN]
    drive = drives[VIT_HIDDEN][-1]
    return (paths, unit_values(acts, "patch", model.prefix_tokens).numpy(),
            unit_values(drive, "patch", model.prefix_tokens).numpy(),
            acts[:, model.prefix_tokens:].numpy(), drive[:, model.prefix_tokens:].numpy())


def check_against(index, model, folder):
    paths, values, drive, patches, patch_drive = brute_force(model, folder)
    assert index.count == len(paths)
    side = int(patches.shape[1] ** 0.5)
    for unit in (0, 7, 63):
        expected = np.argsort(-drive[:, unit], kind="stable")[:K]  # ranked by the drive
        got = index.top(VIT_HIDDEN, unit)
        assert [p for p, _ in got] == [paths[i] for i in expected]
        assert np.allclose([v for _, v in got], values[expected, unit], atol=1e-5)
        lowest = index.top(VIT_HIDDEN, unit, bottom=True)[0]
        assert lowest[0] == paths[int(drive[:, unit].argmin())]
        summary = index.summary(VIT_HIDDEN, unit)
        assert np.isclose(summary["mean"], values[:, unit].mean(), atol=1e-5)
        assert np.isclose(summary["max"], values[:, unit].max(), atol=1e-5)
        strongest = np.argsort(-patch_drive[:, :, unit].ravel(), kind="stable")[:K]
        found = index.top_patches(VIT_HIDDEN, unit)
        assert len(found) == K
        for (path, value, box), flat in zip(found, strongest):
            image, position = divmod(int(flat), patches.shape[1])
            row, col = divmod(position, side)
            assert path == paths[image] and np.isclose(value, patches[image, position, unit],
                                                       atol=1e-5)
            assert box == (col / side, row / side, (col + 1) / side, (row + 1) / side)


def test_the_index_equals_a_brute_force_pass_and_grows_with_new_files_only(tiny_vit, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 0, 10)
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image either")
    index, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K,
                               sample=8, batch_size=4)
    assert added == 10 and len(index.skipped) == 1
    check_against(index, tiny_vit, folder)

    again, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K,
                               sample=8, batch_size=4)
    assert added == 0 and again.count == 10, "a rerun measured indexed or broken files again"
    write_images(folder, 10, 5)
    grown, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K,
                               sample=8, batch_size=4)
    assert added == 5
    check_against(ActivationIndex.load(grown.path), tiny_vit, folder)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` px: a decompression bomb's shape."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + chunk(b"IEND", b""))


def write_unreadable(folder):
    """A bomb, a truncated JPEG, a zero-byte file and text named .jpg: 4 files no one reads."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bomb.png").write_bytes(bomb_png(50_000, 50_000))
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
                    ).save(jpeg, format="JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image, whatever its name says")


def test_unreadable_files_are_skipped_counted_and_a_rerun_finishes(tiny_vit, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 0, 4)
    write_unreadable(folder)
    assert len((folder / "bomb.png").read_bytes()) < 1000
    index, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K,
                               sample=8, batch_size=3)
    assert added == 4 and index.count == 4
    assert sorted(entry.split("|")[0] for entry in index.skipped) == [
        "bomb.png", "empty.png", "text.jpg", "truncated.jpg"]
    again, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K,
                               sample=8, batch_size=3)
    assert added == 0 and again.count == 4 and len(again.skipped) == 4


def test_every_read_caps_the_pixels_whatever_pils_global_says(tmp_path, monkeypatch):
    from vitviz.data.photos import UnreadableImage, readable_photos

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's own check turned off
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(UnreadableImage, match="100 x 100 px"):
        read_rgb(tmp_path / "big.png", max_pixels=5_000)
    assert read_rgb(tmp_path / "big.png").size == (100, 100)
    write_unreadable(tmp_path / "bad")
    found, skipped = readable_photos(sorted((tmp_path / "bad").iterdir()))
    assert found == [] and len(skipped) == 4


def test_an_interrupted_index_resumes_without_losing_or_repeating_images(tiny_vit, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 0, 12)
    seen = []

    def interrupt(done, total):
        seen.append(done)
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K, sample=8,
                    batch_size=2, save_every=2, progress=interrupt)
    (stored,) = (tmp_path / "idx").glob("*.npz")
    partial = ActivationIndex.load(stored)
    assert partial.count == 8, "the saved index lost or invented images"
    index, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "idx", k=K, sample=8,
                               batch_size=2, save_every=2)
    assert added == 4
    check_against(index, tiny_vit, folder)


def test_the_cli_indexes_a_folder(tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 0, 6)
    done = subprocess.run([sys.executable, "-m", "vitviz", "index", "--model", "tiny_vit",
                           "--layers", VIT_HIDDEN, "--photos", str(folder), "--k", "2",
                           "--index-dir", str(tmp_path / "idx")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "6 images (6 added this run, 0 unreadable" in done.stdout
    (folder / "bomb.png").write_bytes(bomb_png(50_000, 50_000))
    again = subprocess.run([sys.executable, "-m", "vitviz", "index", "--model", "tiny_vit",
                            "--layers", VIT_HIDDEN, "--photos", str(folder), "--k", "2",
                            "--index-dir", str(tmp_path / "idx")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "6 images (0 added this run, 1 unreadable files skipped)" in again.stdout
    assert "skipped (" in again.stderr and "bomb.png" in again.stderr
    missing = subprocess.run([sys.executable, "-m", "vitviz", "index", "--model", "tiny_vit",
                              "--layers", VIT_HIDDEN, "--photos", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "is not a folder of images" in missing.stderr


def test_the_ray_engine_builds_the_same_index_as_the_local_one(tiny_vit, tmp_path):
    pytest.importorskip("ray.data", reason="Ray is an optional extra (pip install 'ray[data]')")
    import ray

    folder = tmp_path / "photos"
    write_images(folder, 0, 11)
    (folder / "broken.jpg").write_bytes(b"not an image")
    local, _ = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "local", k=K, sample=8,
                           batch_size=4)
    try:
        distributed, added = build_index(tiny_vit, [VIT_HIDDEN], folder, tmp_path / "ray", k=K,
                                         sample=8, batch_size=4, engine="ray", workers=2)
    finally:
        ray.shutdown()
    assert added == 11 and distributed.files == local.files
    assert distributed.skipped == local.skipped and len(local.skipped) == 1
    ours, theirs = local.stats[VIT_HIDDEN], distributed.stats[VIT_HIDDEN]
    for name in vars(ours):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name), equal_nan=True), name


def test_the_ray_engine_says_how_to_install_ray_when_it_is_missing(tiny_vit, tmp_path,
                                                                  monkeypatch):
    from vitviz.data.ray_engine import RayMissing

    write_images(tmp_path / "photos", 0, 2)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayMissing, match=r"pip install 'ray\[data\]'"):
        build_index(tiny_vit, [VIT_HIDDEN], tmp_path / "photos", tmp_path / "idx",
                    engine="ray")
