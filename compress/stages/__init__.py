"""The stages of ``automl compress`` (``@register_stage``): each makes variants over one run context;
the one-shot pipeline and ``compress --search`` run them in order. See ``_registry.py``."""

from __future__ import annotations

from compress.stages._registry import (
    Stage,
    get_stage,
    list_stages,
    register_stage,
    run_stages,
    search_space,
    unregister_stage,
)

__all__ = ["Stage", "get_stage", "list_stages", "register_stage", "run_stages", "search_space", "unregister_stage"]
