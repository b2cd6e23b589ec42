"""Task registry (the timm pattern): ``@register_task`` + ``get_task`` + ``list_tasks``."""

from __future__ import annotations

from collections.abc import Callable

from automl.exceptions import ConfigError
from automl.tasks._base import Task

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator that makes a task available by ``name``."""

    def deco(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """An instance of the task called ``name``; a ConfigError lists the valid names otherwise."""
    try:
        return _TASKS[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r} (choose from: {', '.join(list_tasks())})") from None
