"""Model builders from plain-typed architecture dicts (what best.pt stores under ``arch``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automl.exceptions import ArtifactError

if TYPE_CHECKING:
    from torch import nn


def _builders() -> dict[str, Callable[[dict[str, Any]], nn.Module]]:
    from automl.models import cnn, mlp, rnn, textcnn

    return {"cnn": cnn.build_cnn, "mlp": mlp.build_mlp, "textcnn": textcnn.build_textcnn, "gru": rnn.build_gru}


def build_from_arch(arch: dict[str, Any]) -> nn.Module:
    """Build a fresh module from ``arch``; ArtifactError for an unknown or incomplete arch."""
    builders = _builders()
    family = arch.get("family") if isinstance(arch, dict) else None
    if family not in builders:
        raise ArtifactError(f"unknown model family {family!r} (known: {', '.join(sorted(builders))})")
    try:
        return builders[family](arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"architecture of family {family!r} is incomplete or invalid: {exc}") from None
