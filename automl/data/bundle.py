"""The data a task loads and how it is split: ``DataConfig`` (saved with every artifact), ``DataBundle``
(the split tensors and their metadata) and ``InputLimits`` (caps on one raw input at predict/serve
time). Plain definitions with no task logic, so model families, tasks and the search all import them
from here (a layer below ``automl.tasks`` and ``automl.models``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split; saved with every artifact."""

    source: str
    seed: int = 0
    target: str | None = None
    image_size: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    problem: str | None = None  # classification | regression (tabular); None = infer
    categorical: tuple[str, ...] = ()  # tabular columns forced categorical (--categorical)
    numeric: tuple[str, ...] = ()  # tabular columns forced numeric (--numeric)
    test_source: str | None = None  # a separate test file (--test-data); then --data is train + validation
    normal: tuple[str, ...] = ()  # anomaly task: the label values (or image classes) that are normal (--normal)
    contamination: float | None = None  # anomaly task: the expected anomaly share (--contamination)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), as the study stores it: a resumed study compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class DataBundle:
    """The whole data set as tensors: train / validation / test, plus plain-typed metadata.

    ``meta`` holds ``input_shape`` (without batch), ``num_classes``, ``classes``, ``preprocess``
    (the spec that predict/serve apply to raw input) and task-specific keys.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_indices(
        cls, encode: Callable[[np.ndarray], torch.Tensor], y: np.ndarray,
        parts: tuple[np.ndarray, np.ndarray, np.ndarray], meta: dict[str, Any]
    ) -> DataBundle:
        """Build the bundle from train/val/test index arrays: ``encode(idx)`` gives the input tensor,
        ``y`` is the NumPy target array."""
        import torch

        tr, va, te = parts
        return cls(encode(tr), torch.from_numpy(y[tr]), encode(va), torch.from_numpy(y[va]),
                   encode(te), torch.from_numpy(y[te]), meta)

    def to(self, device: str | torch.device) -> DataBundle:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return DataBundle(**moved, meta=self.meta)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


@dataclass(frozen=True)
class InputLimits:
    """Caps on one raw input, set by the server (and predict): pixels of a decoded image, characters
    of a text."""

    max_image_pixels: int | None = None
    max_text_chars: int | None = None
