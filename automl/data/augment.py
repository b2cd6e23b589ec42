"""Batched image augmentation drawn per sample, and flip test-time augmentation.

Everything here is tensor work over the whole batch on the batch's device (the airbench pattern): a
random crop of a padded image and a horizontal flip are drawn for every image separately, with no
Python loop over samples. Randomness comes from the ``torch.Generator`` passed in, so a seed gives the
same crops and flips every time (on the same device).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

PAD_MODES = ("zeros", "reflect")


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Flip each image of ``x`` (N, C, H, W) left-right with probability ``p``, drawn per image."""
    import torch

    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(
    x: torch.Tensor, pad: int, generator: torch.Generator | None = None, mode: str = "zeros"
) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` pixels on every side and cut one H x W window per image at a
    random offset in [0, 2 * pad] (both axes, drawn per image): a shift of up to ``pad`` pixels.

    ``mode`` is ``zeros`` (zero padding; zero is the mean after normalisation) or ``reflect``.
    """
    import torch
    import torch.nn.functional as F

    if mode not in PAD_MODES:
        raise ConfigError(f"unknown padding mode {mode!r} (choose from: {', '.join(PAD_MODES)})")
    n, c, h, w = x.shape
    if pad < 0:
        raise ConfigError(f"crop padding must be >= 0, got {pad}")
    if pad == 0 or n == 0:
        return x
    if mode == "reflect" and pad >= min(h, w):  # reflection needs pad < size; fall back to zeros
        mode = "zeros"
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if mode == "zeros" else "reflect")
    dev = x.device
    offsets = torch.randint(0, 2 * pad + 1, (2, n), device=dev, generator=generator)
    rows = offsets[0][:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[1][:, None] + torch.arange(w, device=dev)  # (N, W)
    # One gather: index (n, c, row, col) by broadcasting; no loop over samples.
    n_idx = torch.arange(n, device=dev)[:, None, None, None]
    c_idx = torch.arange(c, device=dev)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def crop_flip(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None, mode: str = "zeros"
) -> torch.Tensor:
    """Per-image random crop (``pad`` pixels of ``mode`` padding) then, where ``flip``, a per-image
    random horizontal flip."""
    x = random_crop(x, pad, generator, mode)
    return random_flip(x, generator) if flip else x


def crop_pad_for(strength: float, height: int, width: int) -> int:
    """Padding of the random crop for an augmentation ``strength``: ``strength`` x max(H, W) / 8 pixels,
    at least 1 (4 pixels on 32 x 32 CIFAR at strength 1)."""
    return max(1, int(round(strength * max(height, width) / 8)))


def flip_tta(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: the mean of the logits for ``x`` and for ``x`` flipped left-right.
    Two passes rather than one of a doubled batch: nothing depends on the batch size, so the ONNX
    export keeps a dynamic batch axis (in eval mode batch norm uses its running statistics anyway)."""
    return (model(x) + model(x.flip(3))) / 2
