"""One implementation of input preprocessing, shared by training, ``predict`` and ``serve``.

``raw_to_model_input(raw, spec)`` is the entry point for predict and serve: it dispatches on
``spec["kind"]`` (image here; tabular in ``automl.data.tabular.encode_records``; text in
``automl.data.text.encode_texts``) and returns the NumPy batch the ONNX ``input`` takes.

An image ``spec`` is a plain dict stored in best.pt and in ONNX metadata::

    {"kind": "image", "channels": 1|3, "size": [H, W], "mean": [...], "std": [...]}

Pixels are scaled to [0, 1] and then normalised per channel with the training split's statistics.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from automl.exceptions import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def normalize(x01: Any, spec: dict[str, Any]) -> Any:
    """(x - mean) / std per channel; works on NumPy arrays and torch tensors of shape (N, C, H, W)."""
    mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    if isinstance(x01, np.ndarray):
        return ((x01.astype(np.float32) - mean) / std).astype(np.float32)
    import torch

    return (x01 - torch.from_numpy(mean).to(x01.device)) / torch.from_numpy(std).to(x01.device)


def decode_image(data: bytes | str, name: str = "image") -> Any:
    """Open image bytes or a path with Pillow and fully decode it; a clear DataError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else Image.open(data)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    return img


def image_to_array01(img: Any, channels: int, size: tuple[int, int] | list[int]) -> np.ndarray:
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


def preprocess_images(images: list[Any], spec: dict[str, Any]) -> np.ndarray:
    """Pillow images -> the normalised float32 batch (N, C, H, W) the model takes."""
    if not images:
        raise DataError("no images given")
    batch = np.stack([image_to_array01(im, spec["channels"], spec["size"]) for im in images])
    return normalize(batch, spec)


def preprocess_image_files(paths: list[str], spec: dict[str, Any]) -> np.ndarray:
    """Image files -> the normalised batch; a DataError names the first unreadable file."""
    return preprocess_images([decode_image(str(p), name=str(p)) for p in paths], spec)


def raw_to_model_input(raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
    """Raw samples -> the model's input batch.

    image: Pillow images, image bytes or file paths; tabular: dict records (column -> value);
    text: strings. Raises DataError with a message that says what was wrong.
    """
    kind = spec.get("kind")
    if not isinstance(raw, list) or not raw:
        raise DataError("no inputs given")
    if kind == "image":
        images = [r if hasattr(r, "convert") else decode_image(r if isinstance(r, bytes) else str(r), name=str(r)[:80])
                  for r in raw]
        return preprocess_images(images, spec)
    if kind == "tabular":
        from automl.data.tabular import encode_records

        return encode_records(raw, spec)
    if kind == "text":
        from automl.data.text import encode_texts

        return encode_texts(raw, spec)
    raise DataError(f"unknown preprocessing kind {kind!r}")
