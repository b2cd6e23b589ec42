"""Image sources: scikit-learn's digits, torchvision data sets, and image folders.

Every loader returns an ``ImageSet``: pixels of shape (N, C, H, W), as float32 in [0, 1] or (image
folders, whose decoding is cached) as uint8 in [0, 255] (``to01`` converts), integer labels, class
names, and an optional separate test part.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl.data.image_cache import cache_root, cached_decode
from automl.data.preprocess import IMAGE_EXTENSIONS
from automl.exceptions import DataError

BUILTIN_IMAGE_SETS = ("digits",)
TORCHVISION_SETS = {"cifar10": "CIFAR10", "mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class ImageSet:
    x: np.ndarray  # (N, C, H, W) float32 in [0, 1], or uint8 in [0, 255]
    y: np.ndarray  # (N,) int64
    classes: list[str]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    hflip: bool = False  # horizontal flips keep the label (natural photos), so augmentation may use them
    name: str = ""


def to01(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1], whether ``x`` holds uint8 or float32 pixels."""
    return x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x


def load_image_source(source: str, image_size: int | None = None) -> ImageSet:
    """Resolve ``--data`` for the image task: a built-in name, a torchvision name, or a folder."""
    key = source.lower()
    if key == "digits":
        return load_digits()
    if key in TORCHVISION_SETS and not Path(source).exists():
        return load_torchvision(key)
    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join([*BUILTIN_IMAGE_SETS, *TORCHVISION_SETS])
        raise DataError(f"--data {source}: no such folder, and not a known data set ({names})")
    if not path.is_dir():
        raise DataError(f"--data {source}: the image task expects a folder of class folders, not a file")
    return load_image_folder(path, image_size=image_size)


def load_digits() -> ImageSet:
    """scikit-learn's 8x8 handwritten digits (1,797 samples, 10 classes; shipped, works offline)."""
    data = _read_digits_csv()
    if data is None:  # scikit-learn moved its data file: its own loader (4-6 s of imports on 2 cores)
        from sklearn.datasets import load_digits as _load

        d = _load()
        images, target = d.images, d.target
    else:  # what sklearn.datasets.load_digits does with the same file
        target = data[:, -1].astype(int, copy=False)
        images = data[:, :-1].reshape(-1, 8, 8)
    x = (images.astype(np.float32) / 16.0)[:, None, :, :]
    return ImageSet(x=x, y=target.astype(np.int64), classes=[str(c) for c in range(10)], name="digits")


def _read_digits_csv() -> np.ndarray | None:
    """The (1797, 65) float64 table of scikit-learn's ``digits.csv.gz``, read without importing
    scikit-learn (its import costs 4-6 s on a loaded 2-core machine; reading the file, about 10 ms);
    None when the file is not where scikit-learn keeps it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = Path(base) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            try:
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    data = np.loadtxt(fh, delimiter=",")
            except (OSError, ValueError, EOFError):
                return None
            return data if data.ndim == 2 and data.shape[1] == 65 else None
    return None


def _cache_dir() -> Path:
    return cache_root() / "torchvision"


def load_torchvision(name: str) -> ImageSet:
    """Download (once) and load a torchvision data set; offline, a DataError says to pass a folder."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_SETS[name])
    root = _cache_dir()
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except Exception as exc:  # URLError, RuntimeError, socket errors: all mean "could not get it"
        raise DataError(
            f"--data {name}: could not download it ({exc.__class__.__name__}: {str(exc)[:80]}); "
            f"offline, pass an image folder instead: --data DIR with DIR/train/<class>/*.png "
            f"(and optional DIR/test/<class>/…)"
        ) from None

    def arrays(ds: object) -> tuple[np.ndarray, np.ndarray]:
        data = np.asarray(ds.data)  # type: ignore[attr-defined]
        if data.ndim == 3:  # (N, H, W) grey
            data = data[:, None]
        else:  # (N, H, W, C)
            data = data.transpose(0, 3, 1, 2)
        return (data.astype(np.float32) / 255.0), np.asarray(ds.targets, dtype=np.int64)  # type: ignore[attr-defined]

    x, y = arrays(train)
    xt, yt = arrays(test)
    return ImageSet(x, y, list(train.classes), xt, yt, hflip=name == "cifar10", name=name)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, following links), in path order. One ``scandir``
    per folder and string sorting: 60,000 files are listed in a fraction of a second."""
    found: list[str] = []
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                elif e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(e.path)
    found.sort(key=lambda f: f.split(os.sep))  # the order of Path sorting, part by part
    return [Path(f) for f in found]


def load_image_folder(path: Path, image_size: int | None = None) -> ImageSet:
    """``path/train/<class>/*`` (+ optional ``path/test/<class>/*``) or ``path/<class>/*``."""
    train_dir = path / "train"
    test_dir = path / "test"
    layout_root = train_dir if train_dir.is_dir() else path
    class_dirs = _class_dirs(layout_root)
    if not class_dirs:
        raise DataError(
            f"--data {path}: no class folders found (expected {path}/<class>/*.png or {path}/train/<class>/…)"
        )
    classes = [d.name for d in class_dirs]
    files: list[tuple[Path, int]] = []
    for i, d in enumerate(class_dirs):
        files += [(f, i) for f in _image_files(d)]
    if not files:
        raise DataError(f"--data {path}: the class folders hold no image files ({', '.join(IMAGE_EXTENSIONS)})")
    counts = Counter(label for _, label in files)
    if len(counts) < 2:
        only = classes[next(iter(counts))]
        raise DataError(f"--data {path}: only one class ('{only}') has images; a classifier needs at least two")
    channels, size = _probe_format(files, image_size)
    x, y = _read_all(files, channels, size, path, "train")
    x_test = y_test = None
    if train_dir.is_dir() and test_dir.is_dir():
        test_files: list[tuple[Path, int]] = []
        for name in _class_dirs_names(test_dir):
            if name not in classes:
                raise DataError(f"--data {path}: test class '{name}' does not exist in train/")
            test_files += [(f, classes.index(name)) for f in _image_files(test_dir / name)]
        if test_files:
            x_test, y_test = _read_all(test_files, channels, size, path, "test")
    return ImageSet(x, y, classes, x_test, y_test, hflip=False, name=str(path))


def _class_dirs_names(folder: Path) -> list[str]:
    return [d.name for d in _class_dirs(folder)]


def _probe_format(files: list[tuple[Path, int]], image_size: int | None) -> tuple[int, tuple[int, int]]:
    """Channel count and (H, W) for the whole set: from the first readable image, or --image-size."""
    from automl.data.preprocess import decode_image

    img = decode_image(str(files[0][0]), name=str(files[0][0]))
    grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
    w, h = img.size
    if image_size:
        h = w = int(image_size)
    return (1 if grey else 3), (h, w)


def _read_all(
    files: list[tuple[Path, int]], channels: int, size: tuple[int, int], folder: Path, part: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded pixels as uint8 and labels, cached (``automl.data.image_cache``), so a second study on
    the same folder skips the decoding."""
    return cached_decode(files, channels, size, folder, part)
