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

    from automl.api import Predictor, compress, search

from automl._version import __version__

__all__ = [
    "ArtifactError",
    "AutomlError",
    "ConfigError",
    "DataError",
    "SearchSpaceError",
    "StorageError",
    "TrainingError",
    "Predictor",
    "__version__",
    "compress",
    "load_checkpoint",
    "load_model",
    "search",
]

#: the Python API (``automl.api``), loaded on first use: ``import automl`` stays light
_API = ("search", "compress", "Predictor")


def __getattr__(name: str) -> Any:
    """``automl.search``, ``automl.compress`` and ``automl.Predictor``, imported from ``automl.api`` when
    first used (it loads Optuna, PyTorch and the compress package only when they are called)."""
    if name == "search":  # the search package, made callable (automl/search/__init__.py)
        import automl.search

        return automl.search
    if name in _API:
        import automl.api

        return getattr(automl.api, name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


def load_model(path: str | Any, device: str = "cpu") -> torch.nn.Module:
    """Rebuild the model stored in a ``best.pt``-format checkpoint and return it in eval mode."""
    from automl.artifacts import load_model as _load_model

    return _load_model(path, device=device)


def load_checkpoint(path: str | Any) -> dict[str, Any]:
    """Load and validate a ``best.pt``-format checkpoint (never unpickles objects)."""
    from automl.artifacts import load_checkpoint as _load_checkpoint

    return _load_checkpoint(path)
