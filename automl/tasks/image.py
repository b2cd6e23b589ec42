"""The image classification task: CNNs over (N, C, H, W) tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.data.bundle import DataBundle, DataConfig, InputLimits
from automl.data.images import load_image_source
from automl.data.preprocess import normalize
from automl.data.splits import check_labels, stratified_split
from automl.exceptions import DataError, InputError
from automl.tasks._base import Task, spec_int, spec_list, spec_numbers
from automl.tasks._registry import register_task

if TYPE_CHECKING:
    import torch


@register_task("image")
class ImageTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = "image classification with a CNN (digits, image folders, CIFAR-10, MNIST)"
    default_model = "cnn"
    default_data = "digits"
    test_data_unsupported = "an image folder with train/ and test/ subfolders keeps its own test split"

    def check_source(self, source: str, target: str | None) -> None:
        """A built-in or torchvision set's name, or an existing folder."""
        from pathlib import Path

        from automl.data.images import BUILTIN_IMAGE_SETS, TORCHVISION_SETS

        if not source or source.lower() in BUILTIN_IMAGE_SETS or source.lower() in TORCHVISION_SETS:
            return
        path = Path(source).expanduser()
        if not path.exists():
            names = ", ".join([*BUILTIN_IMAGE_SETS, *TORCHVISION_SETS])
            raise DataError(f"--data {source}: no such folder, and not a known data set ({names})")
        if not path.is_dir():
            raise DataError(f"--data {source}: the image task expects a folder of class folders, not a file")

    def load_data(self, cfg: DataConfig) -> DataBundle:
        import torch

        data = load_image_source(cfg.source, image_size=cfg.image_size)
        check_labels(data.y, data.classes, cfg.source)
        if data.x_test is not None and data.y_test is not None and len(data.y_test):
            val_frac = cfg.val_fraction / (1.0 - cfg.test_fraction)
            tr, va = stratified_split(data.y, (1.0 - val_frac, val_frac), cfg.seed)
            x_tr, y_tr, x_va, y_va = data.x[tr], data.y[tr], data.x[va], data.y[va]
            x_te, y_te = data.x_test, data.y_test
        else:
            fr = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
            tr, va, te = stratified_split(data.y, fr, cfg.seed)
            x_tr, y_tr, x_va, y_va, x_te, y_te = (
                data.x[tr], data.y[tr], data.x[va], data.y[va], data.x[te], data.y[te]
            )
        # Normalisation statistics come from the training split only.
        mean, std = channel_stats(x_tr)
        c, h, w = x_tr.shape[1:]
        spec = {"kind": "image", "channels": int(c), "size": [int(h), int(w)],
                "mean": [float(m) for m in mean], "std": [float(s) for s in std]}

        def t(x: np.ndarray) -> torch.Tensor:
            if x.dtype == np.uint8:  # cached folders: (x / 255 - mean) / std as one multiply-add in torch
                std = np.asarray(spec["std"], dtype=np.float64)
                scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, -1, 1, 1)
                shift = torch.tensor(-np.asarray(spec["mean"]) / std, dtype=torch.float32).view(1, -1, 1, 1)
                return torch.from_numpy(x).to(torch.float32).mul_(scale).add_(shift)
            return torch.from_numpy(normalize(x, spec))

        meta = {
            "task": self.name,
            "input_shape": [int(c), int(h), int(w)],
            "num_classes": len(data.classes),
            "classes": list(data.classes),
            "preprocess": spec,
            "hflip": bool(data.hflip),
        }
        return DataBundle(
            t(x_tr), torch.from_numpy(y_tr), t(x_va), torch.from_numpy(y_va), t(x_te), torch.from_numpy(y_te), meta
        )

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        return "image-classification"

    # --- raw inputs -------------------------------------------------------------------------------
    fixed_shape = True

    def python_inputs(self, data: Any, spec: dict[str, Any]) -> list[Any]:
        """Besides the defaults: a list of image paths (files or folders) is read like one path."""
        import os

        if isinstance(data, (list, tuple)) and data and all(isinstance(r, (str, os.PathLike)) for r in data):
            return self.read_inputs([os.fspath(r) for r in data], spec)[1]
        return super().python_inputs(data, spec)

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """Image files, or folders of image files (searched recursively)."""
        from pathlib import Path

        from automl.data.preprocess import IMAGE_EXTENSIONS

        names: list[str] = []
        for item in items:
            p = Path(item)
            if p.is_dir():
                found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
                if not found:
                    raise DataError(f"{item}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
                names += found
            elif p.is_file():
                names.append(item)
            else:
                raise DataError(f"{item}: file not found")
        return names, list(names)

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        """Pillow images, image bytes or file paths -> the normalised batch (N, C, H, W)."""
        from automl.data.preprocess import decode_image, preprocess_images

        target = _target(spec)
        images = [r if hasattr(r, "convert") else
                  decode_image(r if isinstance(r, bytes) else str(r), name=str(r)[:80], target=target) for r in raw]
        return preprocess_images(images, spec)

    def input_notes(self, raw: list[Any], spec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any] | None]]:
        """(notes said once per run, ``{"resized_from": [height, width]}`` of each sample that is resized
        or None), read from the file headers: images whose size is not the model's input size are
        resized (a 64x64 drawing given to an 8x8 digits model loses most of its detail), and colour images
        are converted to grey for a model trained on grey images."""
        from PIL import Image

        size = spec.get("size")
        want = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None
        grey = int(spec.get("channels", 0)) == 1
        colour, resized = 0, []
        for item in raw:
            was = None
            try:
                with Image.open(item) as img:  # reads the header only
                    colour += grey and img.mode not in ("1", "L", "LA", "I", "I;16", "F", "P")
                    if want is not None and (img.height, img.width) != want:
                        was = [int(img.height), int(img.width)]
            except (OSError, ValueError, TypeError, AttributeError):
                pass  # unreadable inputs fail with their own message when decoded
            resized.append(was)
        notes = []
        sizes = sorted({f"{h}x{w}" for h, w in (r for r in resized if r is not None)})
        if sizes and want is not None:
            n = sum(r is not None for r in resized)
            shown = ", ".join(sizes[:5]) + (f" and {len(sizes) - 5} more sizes" if len(sizes) > 5 else "")
            notes.append(f"{n} image(s) resized to {want[0]}x{want[1]} (the model's input size) from {shown}; "
                         f"the model sees only that much detail")
        if colour:
            notes.append(f"{colour} colour image(s) converted to grey: the model was trained on grey "
                         "(1-channel) images")
        # [height, width] of the file, before the resize to the model's size
        return notes, [None if r is None else {"resized_from": r} for r in resized]

    def validate_spec(self, spec: dict[str, Any]) -> None:
        c = spec_int(spec, "channels", 1, 4)
        h, w = spec_list(spec, "size", int, 2, 2)
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise DataError(f"preprocess.size must be two sides in [1, {MAX_SIDE}], got {[h, w]}")
        spec_numbers(spec, "mean", c)
        spec_numbers(spec, "std", c, positive=True)
        if "input_shape" in spec and spec["input_shape"] != [c, h, w]:
            raise DataError(f"preprocess.input_shape must be [channels, height, width] = {[c, h, w]}, "
                            f"got {str(spec['input_shape'])[:60]}")

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Channels, input size and the normalisation, so a client can prepare tensors itself (or
        send raw pixels with ``"pixels": "raw"``)."""
        return {"kind": "image", "channels": spec["channels"], "size": list(spec["size"]),
                "mean": list(spec["mean"]), "std": list(spec["std"]),
                "scale": "pixels / 255, then (x - mean) / std per channel",
                "raw_pixels": 'send {"inputs": [...], "pixels": "raw"} with samples of shape [height, width] '
                              "(grey) or [height, width, channels], values 0-255"}

    def encode_json(self, inputs: list[Any], spec: dict[str, Any], options: dict[str, Any],
                    limits: InputLimits) -> np.ndarray | None:
        """``"pixels": "raw"``: samples are images as pixel arrays (rows, then channels last, values
        0-255), preprocessed exactly as uploaded files; otherwise normalised tensors (None here)."""
        pixels = options.get("pixels", "normalized")
        if pixels in ("normalized", "normalised", None):
            return None
        if pixels != "raw":
            raise InputError(f'"pixels" must be "raw" or "normalized", got {str(pixels)[:40]!r}', "invalid_parameter")
        from PIL import Image

        from automl.data.preprocess import preprocess_images

        cap = limits.max_image_pixels or default_max_pixels(spec)
        images = []
        for i, sample in enumerate(inputs):
            try:
                arr = np.asarray(sample, dtype=np.float64)
            except (ValueError, TypeError, OverflowError):
                raise InputError(f"sample {i}: raw pixels must be a nested array of numbers", "wrong_dtype") from None
            if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
                raise InputError(f"sample {i}: raw pixels must have shape [height, width] or [height, width, "
                                 f"channels (1, 3 or 4)], got {list(arr.shape)}", "wrong_shape")
            if arr.shape[0] * arr.shape[1] > cap or 0 in arr.shape:
                raise InputError(f"sample {i}: {arr.shape[1]} x {arr.shape[0]} pixels is outside 1 to {cap} pixels",
                                 "image_too_large")
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
                raise InputError(f"sample {i}: raw pixel values must be in [0, 255]", "out_of_range")
            arr = np.round(arr).astype(np.uint8)
            if arr.ndim == 3 and arr.shape[2] == 1:
                arr = arr[:, :, 0]
            images.append(Image.fromarray(arr))
        return preprocess_images(images, spec)

    def encode_files(self, files: list[tuple[str, bytes]], spec: dict[str, Any], limits: InputLimits) -> np.ndarray:
        """Uploaded image files -> the batch, preprocessed exactly as in training. An image over
        ``limits.max_image_pixels`` (default: ``default_max_pixels``) is refused from its header."""
        from automl.data.preprocess import decode_image, preprocess_images

        cap = limits.max_image_pixels or default_max_pixels(spec)
        images = []
        for name, data in files:
            if not data:
                raise InputError(f"upload {name!r} is empty", "not_an_image")
            try:
                images.append(decode_image(data, name=f"upload {name!r}", max_pixels=cap, target=_target(spec)))
            except InputError:
                raise
            except DataError as exc:
                raise InputError(str(exc), "not_an_image") from None
        return preprocess_images(images, spec)

    def augment_fn(self, meta: dict[str, Any]) -> Callable[..., torch.Tensor]:
        """Per-image random crop (padding ``strength`` x size / 8) and, where the data allows it or
        ``flip`` says so, per-image horizontal flips (``automl.data.augment``)."""
        from automl.data.augment import crop_flip, crop_pad_for

        hflip = bool(meta.get("hflip", False))

        def augment(x: torch.Tensor, strength: float, generator: torch.Generator | None, flip: bool | None = None,
                    pad_mode: str = "zeros") -> torch.Tensor:
            pad = crop_pad_for(strength, x.shape[2], x.shape[3])
            return crop_flip(x, pad, hflip if flip is None else bool(flip), generator, pad_mode)

        return augment


MAX_SIDE = 8192  # pixels: the largest model input side a model file may declare


def default_max_pixels(spec: dict[str, Any]) -> int:
    """The most pixels an uploaded image may have: 16 megapixels (a 4096 x 4096 photo), or 256 times
    the model's input when that is larger."""
    h, w = (int(v) for v in spec.get("size") or (1, 1))
    return max(4096 * 4096, 256 * h * w)


def _target(spec: dict[str, Any]) -> tuple[int, int] | None:
    size = spec.get("size")
    return (int(size[1]), int(size[0])) if isinstance(size, list) and len(size) == 2 else None


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (floored at 1e-6) of pixels in [0, 1] units, for float32 pixels in
    [0, 1] or uint8 pixels (exact, from a 256-bin histogram per channel: no float copy of the set)."""
    if x.dtype != np.uint8:
        return x.mean(axis=(0, 2, 3)).astype(float), np.maximum(x.std(axis=(0, 2, 3)), 1e-6).astype(float)
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for ch in range(x.shape[1]):
        hist = np.bincount(x[:, ch].ravel(), minlength=256).astype(np.float64)
        hist /= hist.sum()
        m = float(hist @ levels)
        means.append(m)
        stds.append(max(float(np.sqrt(max(hist @ (levels - m) ** 2, 0.0))), 1e-6))
    return np.asarray(means), np.asarray(stds)


def shift_and_flip(x: torch.Tensor, strength: float, hflip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Batched augmentation: one random translation per batch by up to ``strength`` x H/8 pixels
    (zero padding), and a random horizontal flip of half the samples where ``hflip``."""
    import torch

    n, _, h, w = x.shape
    max_shift = max(1, int(round(strength * max(h, w) / 8)))
    dev = x.device
    if hflip:
        flip = torch.rand(n, device=dev, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2,), device=dev, generator=generator)).tolist()
    if dy == 0 and dx == 0:
        return x
    pad = torch.nn.functional.pad(x, (max_shift, max_shift, max_shift, max_shift))
    return pad[:, :, max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
