"""The image classification task: CNNs over (N, C, H, W) tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.data.images import load_image_source
from automl.data.preprocess import normalize
from automl.data.splits import check_labels, stratified_split
from automl.exceptions import DataError, InputError
from automl.tasks._base import DataBundle, DataConfig, InputLimits, Task
from automl.tasks._registry import register_task


@register_task("image")
class ImageTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = "image classification with a CNN (digits, image folders, CIFAR-10, MNIST)"
    model_params = frozenset({"depth", "width", "dropout", "batch_norm", "activation", "init"})

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
        mean = x_tr.mean(axis=(0, 2, 3)).astype(float)
        std = np.maximum(x_tr.std(axis=(0, 2, 3)), 1e-6).astype(float)
        c, h, w = x_tr.shape[1:]
        spec = {"kind": "image", "channels": int(c), "size": [int(h), int(w)],
                "mean": [float(m) for m in mean], "std": [float(s) for s in std]}

        def t(x: np.ndarray) -> torch.Tensor:
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

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        from automl.models.cnn import cnn_arch

        return cnn_arch(params, meta)

    # --- raw inputs -------------------------------------------------------------------------------
    fixed_shape = True

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

        images = [r if hasattr(r, "convert") else decode_image(r if isinstance(r, bytes) else str(r), name=str(r)[:80])
                  for r in raw]
        return preprocess_images(images, spec)

    def encode_files(self, files: list[tuple[str, bytes]], spec: dict[str, Any], limits: InputLimits) -> np.ndarray:
        """Uploaded image files -> the batch, preprocessed exactly as in training."""
        from automl.data.preprocess import decode_image, preprocess_images

        images = []
        for name, data in files:
            if not data:
                raise InputError(f"upload {name!r} is empty", "not_an_image")
            try:
                images.append(decode_image(data, name=f"upload {name!r}"))
            except DataError as exc:
                raise InputError(str(exc), "not_an_image") from None
        return preprocess_images(images, spec)

    def augment_fn(self, meta: dict[str, Any]) -> Any:
        hflip = bool(meta.get("hflip", False))

        def augment(x: Any, strength: float, generator: Any) -> Any:
            return shift_and_flip(x, strength, hflip, generator)

        return augment


def shift_and_flip(x: Any, strength: float, hflip: bool, generator: Any) -> Any:
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
