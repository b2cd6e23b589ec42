"""Tiny synthetic image folders for tests (each class a different bright square position)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int = 20, size: int = 12,
                      split: bool = True, mode: str = "RGB", seed: int = 0) -> Path:
    """Write ``root/train/<class>/*.png`` (+ ``root/test``) or ``root/<class>/*.png`` when not split."""
    rng = np.random.default_rng(seed)
    parts = {"train": per_class, "test": max(2, per_class // 4)} if split else {"": per_class}
    for part, n in parts.items():
        for c in range(classes):
            d = root / part / f"class{c}" if part else root / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                q = size // classes
                arr[:, c * q : (c + 1) * q, :] = 230  # a vertical bar whose position is the class
                img = Image.fromarray(arr)
                img = img.convert("L") if mode == "L" else img
                img.save(d / f"{i:03d}.png")
    return root
