"""The image classification task: CNNs over (N, C, H, W) tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.data.images import load_image_source
from automl.data.preprocess import normalize
from automl.data.splits import check_labels, stratified_split
from automl.tasks._base import DataBundle, DataConfig, Task
from automl.tasks._registry import register_task


@register_task("image")
class ImageTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = "image classification with a CNN (digits, image folders, CIFAR-10, MNIST)"
    default_model = "cnn"

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

    def augment_fn(self, meta: dict[str, Any]) -> Any:
        """Per-image random crop (padding ``strength`` x size / 8) and, where the data allows it or
        ``flip`` says so, per-image horizontal flips (``automl.augment``)."""
        from automl.augment import crop_flip, crop_pad_for

        hflip = bool(meta.get("hflip", False))

        def augment(x: Any, strength: float, generator: Any, flip: bool | None = None, pad_mode: str = "zeros") -> Any:
            pad = crop_pad_for(strength, x.shape[2], x.shape[3])
            return crop_flip(x, pad, hflip if flip is None else bool(flip), generator, pad_mode)

        return augment


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
