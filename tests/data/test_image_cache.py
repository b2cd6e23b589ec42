"""The decoded-image cache: a second load reads the cache, a changed folder is re-decoded, a corrupt
entry is an error naming it, and the cached pixels equal the decoded ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl.data import image_cache
from automl.data.images import load_image_folder, to01
from automl.exceptions import DataError
from tests._images import make_image_folder


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(d))
    return d


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images each call of ``decode_all`` decodes."""
    calls: list[int] = []
    real = image_cache.decode_all

    def counting(files, channels, size):  # type: ignore[no-untyped-def]
        calls.append(len(files))
        return real(files, channels, size)

    monkeypatch.setattr(image_cache, "decode_all", counting)
    return calls


def test_second_load_comes_from_the_cache_with_identical_pixels(tmp_path: Path, cache_dir: Path,
                                                                decodes: list[int]) -> None:
    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=8)
    first = load_image_folder(folder)
    assert decodes == [24, 6]  # train and test decoded once
    entries = sorted(p.name for p in (cache_dir / "images").iterdir())
    assert len(entries) == 2 and all(e.endswith(".npz") for e in entries)
    second = load_image_folder(folder)
    assert decodes == [24, 6]  # nothing decoded again
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y, second.y)
    assert np.array_equal(first.x_test, second.x_test) and second.x.dtype == np.uint8
    # The pixels are those of the files: the PNG's bytes, and /255 of them in to01.
    png = np.asarray(Image.open(folder / "train" / "class0" / "000.png").convert("RGB"))
    assert np.array_equal(second.x[0], png.transpose(2, 0, 1))
    assert np.array_equal(to01(second.x)[0], png.transpose(2, 0, 1).astype(np.float32) / 255.0)


def test_a_changed_folder_is_decoded_again(tmp_path: Path, cache_dir: Path, decodes: list[int]) -> None:
    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=8)
    load_image_folder(folder)
    target = folder / "train" / "class1" / "003.png"
    Image.fromarray(np.full((12, 12, 3), 7, dtype=np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # a clearly newer mtime
    changed = load_image_folder(folder)
    assert decodes == [24, 6, 24]  # train re-decoded; test untouched and still cached
    assert int(changed.x[8 + 3].max()) == 7
    (folder / "train" / "class2" / "100.png").write_bytes(target.read_bytes())  # a file added
    assert len(load_image_folder(folder).y) == 25 and decodes[-1] == 25
    assert len(list((cache_dir / "images").iterdir())) == 2  # rebuilt in place, no stale entries left


def test_a_corrupt_entry_is_an_error_that_names_it(tmp_path: Path, cache_dir: Path) -> None:
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=4)
    load_image_folder(folder)
    entry = next(p for p in (cache_dir / "images").iterdir() if p.name.endswith("-train.npz"))
    entry.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=rf"image cache {entry} is corrupt .*delete it"):
        load_image_folder(folder)


def test_cache_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                decodes: list[int]) -> None:
    monkeypatch.delenv("AUTOML_CACHE_DIR", raising=False)
    monkeypatch.delenv("AUTOML_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_root() == tmp_path / "xdg" / "automl"
    monkeypatch.setenv("AUTOML_CACHE_DIR", "off")
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=4)
    load_image_folder(folder)
    load_image_folder(folder)
    assert decodes == [8, 4, 8, 4] and not (tmp_path / "xdg").exists()


def test_uint8_folder_data_gives_the_same_tensors_as_float_pixels(tmp_path: Path, cache_dir: Path) -> None:
    """The image task normalises cached uint8 pixels (histogram statistics, torch) to what the float
    path gives: the same statistics and inputs within float32 rounding."""
    import torch

    from automl.tasks.image import channel_stats

    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=8)
    u8 = load_image_folder(folder).x
    m8, s8 = channel_stats(u8)
    mf, sf = channel_stats(to01(u8))
    assert np.allclose(m8, mf, atol=1e-6) and np.allclose(s8, sf, atol=1e-6)
    from automl.tasks import DataConfig, get_task

    bundle = get_task("image").load_data(DataConfig(source=str(folder), seed=0))
    spec = bundle.meta["preprocess"]
    ref = (to01(load_image_folder(folder).x_test) - np.float32(spec["mean"]).reshape(1, -1, 1, 1)) / np.float32(
        spec["std"]).reshape(1, -1, 1, 1)
    assert bundle.x_test.dtype == torch.float32 and np.allclose(bundle.x_test.numpy(), ref, atol=1e-5)
