import warnings

import numpy as np
import pytest
from PIL import Image

from brainvq import data as D
from brainvq.config import DataConfig
from brainvq.errors import DataError

from ..conftest import SHARED_128, write_slices


def test_keras_layout_ignores_seg_and_keeps_splits(keras_root):
    s = D.discover(keras_root)
    assert s.source == "keras"
    assert s.sizes() == {"train": 24, "validate": 4, "test": 6}
    assert all("slices_seg" not in str(p) for fs in s.files.values() for p in fs)


def test_keras_layout_without_validate_takes_seeded_share(tmp_path):
    root = tmp_path / "k"
    write_slices(root / "keras_png_slices_train", 20, 32)
    write_slices(root / "keras_png_slices_test", 4, 32, seed=5)
    a = D.discover(root, DataConfig(val_fraction=0.2, split_seed=3))
    b = D.discover(root, DataConfig(val_fraction=0.2, split_seed=3))
    assert a.sizes() == {"train": 16, "test": 4, "validate": 4}
    assert a.files["validate"] == b.files["validate"]
    assert not set(a.files["validate"]) & set(a.files["train"])


def test_original_project_layout(tmp_path):
    root = tmp_path / "proj"
    write_slices(root / "oasis" / "train" / "keras_png_slices_train", 10, 32)
    write_slices(root / "oasis" / "test" / "keras_png_slices_test", 3, 32, seed=9)
    for r in (root, root / "oasis"):
        s = D.discover(r, DataConfig(val_fraction=0.2))
        assert s.source == "original"
        assert s.sizes() == {"train": 8, "test": 3, "validate": 2}


def test_plain_folder_seeded_split(tmp_path):
    root = tmp_path / "plain"
    write_slices(root / "a", 10, 32)
    write_slices(root / "b", 10, 32, seed=4, prefix="other")
    with pytest.warns(UserWarning, match="10 of 20 slice names carry no subject"):
        s = D.discover(root, DataConfig(val_fraction=0.1, test_fraction=0.2))  # other_NNN
    assert s.source == "folder"
    assert s.sizes() == {"validate": 2, "test": 4, "train": 14}
    all_files = [p for fs in s.files.values() for p in fs]
    assert len(set(all_files)) == 20


def test_embedded_default_data():
    s = D.discover("default", DataConfig(image_size=128))
    sizes = s.sizes()
    assert sum(sizes.values()) == 132 and sizes["test"] > 0
    arrays = D.split_arrays(s, DataConfig(image_size=64))
    assert arrays["train"].shape[1:] == (64, 64) and arrays["train"].dtype == np.uint8


def test_decode_cache_is_reused(keras_root, monkeypatch):
    cfg = DataConfig(image_size=32)
    first = D.load_splits(keras_root, cfg, progress=False)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(D, "decode_slice", no_decoding)
    files = D.discover(keras_root).files
    second = {k: D.load_uint8(v, 32, cfg, progress=False) for k, v in files.items()}
    for k in first:
        assert np.array_equal(first[k], second[k])
    assert isinstance(second["train"], np.memmap)


def test_resize_rule_pads_then_resizes():
    img = np.full((20, 40), 200, np.uint8)
    out = D.to_square(img, 16)
    assert out.shape == (16, 16)
    assert out[0, 8] == 0 and out[8, 8] == 200  # padded rows at the top are black


def test_sixteen_bit_and_rgb_converted_with_warning(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray((np.arange(1024).reshape(32, 32) * 60).astype(np.uint16)).save(folder / "a.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(folder / "b.png")
    files = sorted(folder.glob("*.png"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        arr = D.load_uint8(files, 32, DataConfig(cache_dir=str(tmp_path / "c")), progress=False)
    msgs = " ".join(str(x.message) for x in w)
    assert "rescaled to 8-bit" in msgs and "converted to grayscale" in msgs
    assert arr[0].max() == 255 and arr[1].max() == 90


def test_named_slices_warn_when_converted_or_resized(tmp_path):
    """What `score` and `sample --like` read: one warning per kind of change, naming slices."""
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(odd / "rgb.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(odd / "wide.png")
    write_slices(tmp_path / "ok", 1, 32)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        files, images = D.read_named_slices([str(tmp_path / "ok"), str(odd)], 32)
    assert images.shape == (3, 32, 32) and len(files) == 3
    msgs = sorted(str(x.message) for x in w)
    assert msgs == [
        "1 slice(s) were RGB converted to grayscale: rgb.png",
        "1 slice(s) were resized from 40x32 to 32x32: wide.png",
        "1 slice(s) were resized from 64x64 to 32x32: rgb.png",
    ]


def test_mixed_sizes_warn(tmp_path):
    write_slices(tmp_path / "m", 2, 32)
    write_slices(tmp_path / "m", 1, 48, prefix="big")
    files = sorted((tmp_path / "m").glob("*.png"))
    with pytest.warns(UserWarning, match="mixed sizes"):
        arr = D.load_uint8(files, 32, DataConfig(cache_dir=str(tmp_path / "c")), progress=False)
    assert arr.shape == (3, 32, 32)


def test_errors_name_the_culprit(tmp_path, keras_root):
    with pytest.raises(DataError, match="not found"):
        D.discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG/JPEG slices"):
        D.discover(tmp_path / "empty")
    seg_only = tmp_path / "seg"
    write_slices(seg_only / "keras_png_slices_seg_train", 3, 32)
    with pytest.raises(DataError, match="only segmentation"):
        D.discover(seg_only)
    empty_split = tmp_path / "es"
    write_slices(empty_split / "keras_png_slices_train", 3, 32)
    (empty_split / "keras_png_slices_test").mkdir()
    with pytest.raises(DataError, match="keras_png_slices_test"):
        D.discover(empty_split)
    (keras_root / "keras_png_slices_train" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt"):
        D.discover(keras_root)


def test_truncated_and_fake_png_named(tmp_path):
    folder = tmp_path / "bad"
    good = write_slices(folder, 1, 32)[0]
    trunc = folder / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match="trunc.png"):
        D.load_uint8([good, trunc], 32, DataConfig(), progress=False)
    fake = folder / "fake.png"
    fake.write_text("this is not a png")
    with pytest.raises(DataError, match="fake.png"):
        D.load_uint8([fake], 32, DataConfig(), progress=False)


@pytest.mark.skipif(not SHARED_128.exists(), reason="../shared development data not present")
def test_shared_development_data_loads_by_brain():
    s = D.discover(SHARED_128)
    assert s.sizes() == {"train": 1216, "validate": 128, "test": 256}  # 38/4/8 brains of 32 slices
    summary = s.subject_summary()
    assert summary["subjects"] == {"train": 38, "validate": 4, "test": 8}
    assert summary["subjects_in_more_than_one_split"] == 0
    assert summary["slices_without_subject"] == 0
    assert sorted(set(s.levels["test"])) == list(range(32))  # slice_0 ... slice_31 of each brain
