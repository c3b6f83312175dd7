import dataclasses
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from vitviz.data import photos as data
from vitviz.rendering import objectives as O
from vitviz.store.runs import RunRequest

from conftest import NO_PHOTO_PRIOR, VIT_HIDDEN

# Photos per source. scikit-image, scikit-learn, matplotlib and foolbox are requirements, so
# theirs must be there; opencv-doc is a Debian package, checked where it is installed.
KNOWN_COUNTS = {"skimage": 10, "sklearn": 2, "matplotlib": 1, "foolbox": 20, "opencv": 25}
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")


@pytest.fixture
def fresh_cache():
    """Tests that change the sources must neither see nor leave cached photos."""
    data._load.cache_clear()
    yield
    data._load.cache_clear()


def _replace_source(monkeypatch, name, **changes):
    monkeypatch.setitem(data._SOURCES, name, dataclasses.replace(data._SOURCES[name], **changes))


def _expected_sources():
    return [name for name in KNOWN_COUNTS if name != "opencv" or OPENCV_DOC.is_dir()]


def test_every_listed_photo_of_the_installed_sources_loads():
    counts = data.available_sources()
    photos = data.load_photos()
    for name in _expected_sources():
        assert counts[name] == KNOWN_COUNTS[name], name
        assert sum(p.name.startswith(f"{name}/") for p in photos) == KNOWN_COUNTS[name], name
    assert len(photos) == sum(counts.values())


def test_photos_are_rgb_distinct_and_sorted():
    photos = data.load_photos()
    assert all(p.image.mode == "RGB" and min(p.image.size) >= 128 for p in photos)
    assert len({p.name for p in photos}) == len(photos)
    assert len({p.image.tobytes() for p in photos}) == len(photos)  # no file listed twice
    assert [p.name for p in photos] == sorted(p.name for p in photos)
    assert all(p.source.split()[-1][0].isdigit() for p in photos)  # provenance has a version


def test_sources_can_be_chosen_and_loads_are_cached():
    sklearn = data.load_photos(["sklearn"])
    assert [p.name for p in sklearn] == ["sklearn/china", "sklearn/flower"]
    assert sklearn[0].source.startswith("scikit-learn ")
    sklearn.clear()
    again = data.load_photos(("sklearn", "sklearn"))
    assert len(again) == 2  # clearing the returned list did not empty the cache
    assert again[0].image is data.load_photos(["sklearn"])[0].image
    with pytest.raises(ValueError, match="unknown photo sources"):
        data.load_photos(["imagenet"])


def test_loading_needs_no_network(monkeypatch, fresh_cache):
    def refuse(*args, **kwargs):
        raise AssertionError("photo loading tried to open a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    assert len(data.load_photos()) == sum(KNOWN_COUNTS[name] for name in _expected_sources())


def test_grey_and_transparent_files_become_rgb_sorted_by_name(monkeypatch, tmp_path, fresh_cache):
    Image.new("L", (200, 150), 90).save(tmp_path / "grey.png")
    Image.new("RGBA", (160, 300), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    files = ("grey.png", "absent.jpg", "alpha.png")
    _replace_source(monkeypatch, "opencv", folder=str(tmp_path), files=files)
    with pytest.warns(UserWarning, match="absent.jpg not found"):
        transparent, grey = data.load_photos(["opencv"])
    assert (transparent.name, grey.name) == ("opencv/alpha", "opencv/grey")
    assert grey.image.mode == "RGB" and grey.image.size == (200, 150)
    assert grey.image.getpixel((5, 5)) == (90, 90, 90)
    assert transparent.image.mode == "RGB" and transparent.image.getpixel((5, 5)) == (10, 20, 30)


def test_a_missing_source_is_skipped_with_a_warning(monkeypatch, tmp_path, fresh_cache):
    _replace_source(monkeypatch, "opencv", folder=str(tmp_path / "absent"))
    with pytest.warns(UserWarning, match="'opencv' skipped: opencv-doc is not installed"):
        photos = data.load_photos()
    assert photos and not any(p.name.startswith("opencv/") for p in photos)
    assert data.available_sources()["opencv"] == 0


def test_no_photos_at_all_is_a_helpful_error(monkeypatch, tmp_path, fresh_cache):
    with pytest.raises(data.PhotosUnavailable, match="tried: none.*pip install scikit-image"):
        data.load_photos(())
    for name, source in data._SOURCES.items():
        if source.module is None:
            _replace_source(monkeypatch, name, folder=str(tmp_path / "absent"))
        else:
            _replace_source(monkeypatch, name, module="vitviz_no_such_package")
    with pytest.warns(UserWarning, match="not installed"):
        with pytest.raises(data.PhotosUnavailable, match="apt-get install opencv-doc") as error:
            data.load_photos()
    assert "scikit-learn" in str(error.value) and "matplotlib" in str(error.value)
    assert data.available_sources() == dict.fromkeys(data.SOURCES, 0)
    # The default reads its unit's photos: refused before any work, with both ways out.
    unit = O.neuron(VIT_HIDDEN, 3).spec()
    with pytest.raises(data.PhotosUnavailable, match="exemplar-stats 0.*pip install scikit-image"):
        RunRequest("tiny_vit", unit).check()
    RunRequest("tiny_vit", unit, overrides=NO_PHOTO_PRIOR).check()


def test_photo_tensor_is_the_centre_square_in_range():
    photos = data.load_photos(["sklearn"])
    x = data.photo_tensor(photos, 64)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05  # a real photo, not a blank


def test_photo_tensor_resizes_the_shorter_side_then_crops_the_centre():
    stripes = Image.new("RGB", (300, 100), (255, 0, 0))
    stripes.paste((0, 255, 0), (100, 0, 200, 100))  # the centre third is green
    stripes.paste((0, 0, 255), (200, 0, 300, 100))
    x = data.photo_tensor([data.Photo("test/stripes", "test", stripes)], 40)
    # 300x100 -> 120x40 -> the middle 40x40, which is all green (bar bicubic's edge ringing).
    assert x.shape == (1, 3, 40, 40)
    green = torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(x[0, :, :, 2:-2].mean(dim=(1, 2)), green, atol=0.02)
