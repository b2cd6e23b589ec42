"""automl: find a good network with Optuna, shrink it, ship it with ONNX Runtime.

Heavy libraries (torch, optuna, onnx) are imported inside functions so that ``automl --help`` is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automl.exceptions import (
    ArtifactError,
    AutomlError,
    ConfigError,
    DataError,
    SearchSpaceError,
    StorageError,
    TrainingError,
)

if TYPE_CHECKING:
    import torch

from automl._version import __version__

__all__ = [
    "ArtifactError",
    "AutomlError",
    "ConfigError",
    "DataError",
    "SearchSpaceError",
    "StorageError",
    "TrainingError",
    "__version__",
    "load_checkpoint",
    "load_model",
]


def load_model(path: str | Any, device: str = "cpu") -> torch.nn.Module:
    """Rebuild the model stored in a ``best.pt``-format checkpoint and return it in eval mode."""
    from automl.artifacts import load_model as _load_model

    return _load_model(path, device=device)


def load_checkpoint(path: str | Any) -> dict[str, Any]:
    """Load and validate a ``best.pt``-format checkpoint (never unpickles objects)."""
    from automl.artifacts import load_checkpoint as _load_checkpoint

    return _load_checkpoint(path)
