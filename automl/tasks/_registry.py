"""Task registry (the timm pattern): ``@register_task`` + ``get_task`` + ``list_tasks``.

Every module of this package whose name does not start with ``_`` is imported on first use (as
``automl.models`` discovers its families), so a new task is one new file here, or one class
registered from anywhere with ``@register_task`` (a test's toy task), and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from automl.exceptions import ConfigError
from automl.registry import import_public_modules
from automl.tasks._base import Task

_TASKS: dict[str, type[Task]] = {}
_discovered = False


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator that makes a task available by ``name``."""

    def deco(cls: type[Task]) -> type[Task]:
        if name in _TASKS and _TASKS[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"task {name!r} is registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def unregister_task(name: str) -> None:
    """Forget the task called ``name`` (a test's toy task, after the test)."""
    _TASKS.pop(name, None)


def _discover() -> None:
    """Import every public module of this package once (each registers its task)."""
    global _discovered
    if _discovered:
        return
    import_public_modules(__package__)  # the package is imported before any of its modules
    _discovered = True


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    _discover()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """An instance of the task called ``name``; a ConfigError lists the valid names otherwise."""
    _discover()
    try:
        return _TASKS[name]()
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r} (choose from: {', '.join(list_tasks())})") from None
