"""A cache of decoded image folders, so 60,000 JPEGs are decoded once, not once per study.

An entry holds the decoded pixels as uint8 (N, C, H, W) and the labels, in an uncompressed ``.npz``
file read with ``allow_pickle=False`` (loading never runs code). Its key is a SHA-256 over the file
list (relative paths, labels, sizes, modification times in ns) and the target channels and size; the
key is stored inside the entry. An entry whose key differs from the folder's (a file added, removed,
touched or relabelled) is stale and rebuilt in place; one that cannot be read is an error that names
the file. Entries are written to a temporary file and renamed, so a crash never leaves half of one.

Where: ``$AUTOML_CACHE_DIR`` (``AUTOML_CACHE`` is read too), else ``$XDG_CACHE_HOME/automl``, else
``~/.cache/automl``; entries live under ``images/``. ``AUTOML_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from automl.exceptions import DataError

FORMAT = 1


def cache_root() -> Path:
    """The cache directory (see the module docstring); it may not exist yet."""
    env = os.environ.get("AUTOML_CACHE_DIR") or os.environ.get("AUTOML_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "automl"


def cache_disabled() -> bool:
    return os.environ.get("AUTOML_CACHE_DIR", "").lower() in ("off", "0", "none")


def folder_key(files: list[tuple[Path, int]], root: Path, channels: int, size: tuple[int, int]) -> str:
    """SHA-256 over what decides the decoded arrays: each file's relative path, label, size and mtime
    (ns), plus the channel count and (H, W)."""
    h = hashlib.sha256(f"v{FORMAT} c{channels} {size[0]}x{size[1]}\n".encode())
    prefix = str(root) + os.sep
    lines = []
    for f, label in files:
        name = str(f)
        st = os.stat(name)
        rel = name[len(prefix):] if name.startswith(prefix) else name
        lines.append(f"{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n")
    h.update("".join(lines).encode())
    return h.hexdigest()


def entry_path(root: Path, part: str) -> Path:
    """One entry per (folder, part): a re-decoded folder replaces its old entry instead of adding one."""
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_root() / "images" / f"{name}-{part}.npz"


def _read_entry(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(key, pixels, labels) of an entry; DataError naming the file when it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            key = bytes(z["key"]).decode("ascii")
            x, y = z["x"], z["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DataError(
            f"image cache {path} is corrupt ({exc.__class__.__name__}); delete it to rebuild it"
        ) from None
    if x.dtype != np.uint8 or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"image cache {path} is corrupt (unexpected arrays); delete it to rebuild it")
    return key, x, y.astype(np.int64, copy=False)


def _write_entry(path: Path, key: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.frombuffer(key.encode("ascii"), dtype=np.uint8), x=x, y=y)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode_all(files: list[tuple[Path, int]], channels: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every file to uint8 (N, C, H, W), converted to ``channels`` and resized to ``size``."""
    from PIL import Image

    from automl.data.preprocess import decode_image

    h, w = int(size[0]), int(size[1])
    x = np.empty((len(files), channels, h, w), dtype=np.uint8)
    y = np.empty(len(files), dtype=np.int64)
    mode = "L" if channels == 1 else "RGB"
    for i, (f, label) in enumerate(files):
        img = decode_image(str(f), name=str(f)).convert(mode)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        x[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
        y[i] = label
    return x, y


def cached_decode(
    files: list[tuple[Path, int]], channels: int, size: tuple[int, int], root: Path, part: str
) -> tuple[np.ndarray, np.ndarray]:
    """The decoded uint8 pixels and labels of ``files`` (a folder's ``part``: train or test), from the
    cache when its key matches, else decoded and stored."""
    if cache_disabled():
        return decode_all(files, channels, size)
    key = folder_key(files, root, channels, size)
    path = entry_path(root, part)
    if path.exists():
        stored, x, y = _read_entry(path)
        if stored == key:
            return x, y
    x, y = decode_all(files, channels, size)
    with contextlib.suppress(OSError):  # a read-only or full cache directory costs speed, not the study
        _write_entry(path, key, x, y)
    return x, y
