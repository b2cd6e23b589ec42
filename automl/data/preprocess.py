"""Image preprocessing shared by training, ``predict`` and ``serve``, and reading input tables.

Each task encodes its own raw inputs (``Task.encode_inputs``); ``automl.runtime.inference.raw_to_model_input``
picks the task from the spec's ``kind``. The image task uses the functions here.

An image ``spec`` is a plain dict stored in best.pt and in ONNX metadata::

    {"kind": "image", "channels": 1|3, "size": [H, W], "mean": [...], "std": [...]}

Pixels are scaled to [0, 1] and then normalised per channel with the training split's statistics.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from automl.exceptions import DataError, InputError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from PIL import Image

    from automl.data import PreprocessSpec

    ArrayOrTensor = np.ndarray | torch.Tensor

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_FILES = (".csv", ".tsv", ".parquet")


def normalize(x01: ArrayOrTensor, spec: PreprocessSpec) -> ArrayOrTensor:
    """(x - mean) / std per channel; works on NumPy arrays and torch tensors of shape (N, C, H, W)."""
    mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    if isinstance(x01, np.ndarray):
        return ((x01.astype(np.float32) - mean) / std).astype(np.float32)
    import torch

    return (x01 - torch.from_numpy(mean).to(x01.device)) / torch.from_numpy(std).to(x01.device)


def decode_image(data: bytes | str, name: str = "image", max_pixels: int | None = None,
                 target: tuple[int, int] | None = None) -> Image.Image:
    """Open image bytes or a path with Pillow and decode it; a clear DataError otherwise.

    ``max_pixels``: refuse a larger image from its header, before a byte of it is decoded (an
    ``InputError`` with code ``image_too_large``): a 0.5 MB PNG can hold 13,000 x 13,000 pixels, 500 MB
    decoded. ``target`` = (W, H) of the coming resize: JPEGs are decoded at a reduced scale (``draft``)
    and any image at least 4x larger is first reduced by an integer factor (``reduce``), both keeping
    at least twice the target size so the final bilinear resize is unchanged in practice.
    """
    from PIL import Image, UnidentifiedImageError

    _quiet_pillow()
    try:
        img = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else Image.open(data)
        w, h = img.size
        if max_pixels is not None and w * h > max_pixels:
            img.close()
            raise InputError(f"{name}: {w} x {h} = {w * h} pixels is over the limit of {max_pixels} pixels "
                             "(send a smaller image)", "image_too_large")
        if target is not None and img.format == "JPEG":
            img.draft("L" if img.mode == "L" else "RGB", (2 * target[0], 2 * target[1]))
        img.load()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the image has too many pixels (Pillow refuses to decode it)",
                         "image_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    if target is not None:
        factor = min(img.size[0] // (2 * target[0]), img.size[1] // (2 * target[1]))
        if factor >= 2 and img.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):  # modes reduce() handles
            img = img.reduce(factor)
    return img


_QUIET = [False]


def _quiet_pillow() -> None:
    """Silence Pillow's DecompressionBombWarning once per process: callers that must refuse large
    images pass ``max_pixels`` (a far lower cap), and a warning on stderr per request helps no one."""
    if not _QUIET[0]:
        import warnings

        from PIL import Image

        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _QUIET[0] = True


def image_to_array01(img: Image.Image, channels: int, size: tuple[int, int] | list[int]) -> np.ndarray:
    """A Pillow image -> float32 array (C, H, W) in [0, 1], converted to the channel count and
    resized (bilinear) to ``size`` = (H, W)."""
    from PIL import Image

    img = img.convert("L" if channels == 1 else "RGB")
    h, w = int(size[0]), int(size[1])
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if channels == 1:
        arr = arr[None, :, :]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def preprocess_images(images: list[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """Pillow images -> the normalised float32 batch (N, C, H, W) the model takes."""
    if not images:
        raise DataError("no images given")
    batch = np.stack([image_to_array01(im, spec["channels"], spec["size"]) for im in images])
    return normalize(batch, spec)


def preprocess_image_files(paths: list[str], spec: PreprocessSpec) -> np.ndarray:
    """Image files -> the normalised batch; a DataError names the first unreadable file."""
    return preprocess_images([decode_image(str(p), name=str(p)) for p in paths], spec)


def read_input_table(path: Path) -> pd.DataFrame:
    """A ``.csv``/``.tsv``/``.parquet`` file of inputs as a DataFrame; a DataError in one line otherwise."""
    import pandas as pd

    from automl.data.bounds import check_fields, check_packed, check_table

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        if path.suffix.lower() == ".parquet":
            check_packed(path, str(path))
            frame = pd.read_parquet(path)
        else:
            check_table(path, None, sep, str(path))
            frame = pd.read_csv(path, sep=sep)
    except DataError:
        raise
    except Exception as exc:  # parser errors of every kind: one readable line
        raise DataError(f"{path}: cannot read it as a table ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    check_fields(frame, str(path))
    return frame
