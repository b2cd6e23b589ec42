"""Compress-stage registry (as ``automl.models``' families): ``@register_stage(name, order=...)``.

A stage is one object with

- ``applies(ctx) -> bool``: whether it runs for this context (a model it cannot handle, a mode it
  does not serve);
- ``run(ctx) -> list[Variant]``: make its variants (files in ``ctx.work``) and return them; it may
  also add networks to export (``ctx.networks``), notes (``ctx.note``) and a report section
  (``ctx.sections[name]``);
- ``params(ctx) -> dict[str, tuple]``: the choices it contributes to ``compress --search``'s space
  (a trial's values are in ``ctx.params``; a single choice is recorded, not searched).

Stages run in ``order`` (then name) over one ``compress.context.CompressContext``, in the one-shot
pipeline and in each ``--search`` candidate alike. Every module of this package whose name does not
start with ``_`` is imported on first use, so a new stage is one new file here and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from automl.exceptions import ConfigError
from automl.registry import import_public_modules

if TYPE_CHECKING:
    from compress.context import CompressContext
    from compress.verdict import Variant


class Stage:
    """Base class of a compress stage (subclassing it is optional: duck typing works too)."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100

    def applies(self, ctx: CompressContext) -> bool:
        return True

    def run(self, ctx: CompressContext) -> list[Variant]:
        raise NotImplementedError

    def params(self, ctx: CompressContext) -> dict[str, tuple[Any, ...]]:
        return {}


S = TypeVar("S")
_STAGES: dict[str, Stage] = {}  # instances, or any object with the same three methods
_ORDER: dict[str, int] = {}
_discovered = False


def register_stage(name: str, order: int = 100) -> Callable[[S], S]:
    """Decorator on a stage class (an instance is registered) or on a stage object."""

    def deco(obj: S) -> S:
        new = obj if isinstance(obj, type) else type(obj)
        if name in _STAGES and type(_STAGES[name]).__qualname__ != new.__qualname__:
            raise ValueError(f"compress stage {name!r} is registered twice")
        stage = obj() if isinstance(obj, type) else obj
        if isinstance(obj, type):
            obj.name, obj.order = name, order  # type: ignore[attr-defined]
        _STAGES[name], _ORDER[name] = stage, order
        return obj

    return deco


def unregister_stage(name: str) -> None:
    """Remove a stage (tests register toy stages and remove them afterwards)."""
    _STAGES.pop(name, None)
    _ORDER.pop(name, None)


def _discover() -> None:
    """Import every public module of this package once (each registers its stage)."""
    global _discovered
    if _discovered:
        return
    import_public_modules(__package__)  # the package is imported before any of its modules
    _discovered = True


def list_stages() -> list[str]:
    """Names of every registered stage, in the order they run."""
    _discover()
    return sorted(_STAGES, key=lambda n: (_ORDER[n], n))


def get_stage(name: str) -> Stage:
    """The stage called ``name``; a ConfigError lists the valid names otherwise."""
    _discover()
    try:
        return _STAGES[name]
    except KeyError:
        raise ConfigError(f"unknown compress stage {name!r} (choose from: {', '.join(list_stages())})") from None


def run_stages(ctx: CompressContext) -> list[Variant]:
    """Run every stage that applies to ``ctx`` in order; each one's variants are added to
    ``ctx.variants`` before the next runs. Returns ``ctx.variants``."""
    for name in list_stages():
        stage = _STAGES[name]
        if stage.applies(ctx):
            ctx.variants.extend(stage.run(ctx))
    return ctx.variants


def search_space(ctx: CompressContext) -> dict[str, tuple[Any, ...]]:
    """The ``--search`` space: every stage's choices, in stage order."""
    space: dict[str, tuple[Any, ...]] = {}
    for name in list_stages():
        space.update(_STAGES[name].params(ctx))
    return space
