import pytest
import torch

from vitviz import data


def test_every_listed_photo_of_the_installed_sources_loads():
    counts = data.available_sources()
    # scikit-image, scikit-learn and matplotlib are requirements: their photos must be there.
    assert counts["skimage"] == len(data.SKIMAGE_FILES)
    assert counts["sklearn"] == len(data.SKLEARN_FILES)
    assert counts["matplotlib"] == len(data.MATPLOTLIB_FILES)
    if data.OPENCV_DIR.is_dir():
        assert counts["opencv"] == len(data.OPENCV_FILES)
    photos = data.load_photos()
    assert len(photos) == sum(counts.values())
    assert len({p.name for p in photos}) == len(photos)
    assert all(p.image.mode == "RGB" and min(p.image.size) >= 128 for p in photos)
    assert [p.name for p in photos] == sorted(p.name for p in photos)


def test_photo_tensor_is_square_and_in_range():
    photos = data.load_photos(["sklearn"])
    x = data.photo_tensor(photos, 64)
    assert x.shape == (2, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert x.std() > 0.05  # a real photo, not a blank


def test_no_photos_is_a_clear_error(monkeypatch):
    with pytest.raises(data.PhotosUnavailable, match="pip install scikit-image"):
        data.load_photos([])
    monkeypatch.setattr(data, "_source_files", lambda source: ("nothing", []))
    data._load.cache_clear()
    try:
        with pytest.raises(data.PhotosUnavailable, match="opencv-doc"):
            data.load_photos()
    finally:
        data._load.cache_clear()
    with pytest.raises(ValueError, match="unknown photo sources"):
        data.load_photos(["imagenet"])
