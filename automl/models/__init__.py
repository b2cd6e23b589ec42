"""Model families (``@register_model``) and building a module from a plain arch dict (what best.pt
stores under ``arch``). See ``_registry.py`` for what a family provides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.exceptions import ArtifactError
from automl.models._arch_bounds import check_arch_bounds, check_arch_matches_weights, family_of, short_value
from automl.models._registry import (
    Arch,
    Meta,
    ModelFamily,
    Params,
    get_model,
    list_models,
    register_model,
    unregister_model,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Arch", "Meta", "ModelFamily", "Params", "build_from_arch", "check_arch_bounds",
           "check_arch_matches_weights", "family_of", "get_model", "list_models", "register_model", "short_value",
           "unregister_model"]


def build_from_arch(arch: Arch) -> nn.Module:
    """Build a fresh module from ``arch``; ArtifactError for an unknown or incomplete arch."""
    family = family_of(arch)
    try:
        return family.build(arch)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"architecture of family {family.name!r} is incomplete or invalid: {exc}") from None
