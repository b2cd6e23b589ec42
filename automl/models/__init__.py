"""Model families (``@register_model``) and building a module from a plain arch dict (what best.pt
stores under ``arch``). See ``_registry.py`` for what a family provides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.exceptions import ArtifactError, ConfigError
from automl.models._registry import Arch, Meta, ModelFamily, Params, get_model, list_models, register_model

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Arch", "Meta", "ModelFamily", "Params", "build_from_arch", "family_of", "get_model", "list_models",
           "register_model"]


def family_of(arch: object) -> ModelFamily:
    """The registered family named by ``arch["family"]``; ArtifactError when there is none."""
    name = arch.get("family") if isinstance(arch, dict) else None
    try:
        return get_model(name)  # type: ignore[arg-type]
    except ConfigError:
        raise ArtifactError(f"unknown model family {name!r} (known: {', '.join(list_models())})") from None


def build_from_arch(arch: Arch) -> nn.Module:
    """Build a fresh module from ``arch``; ArtifactError for an unknown or incomplete arch."""
    family = family_of(arch)
    try:
        return family.build(arch)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"architecture of family {family.name!r} is incomplete or invalid: {exc}") from None
