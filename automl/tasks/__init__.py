"""Tasks: each module registers one task. Import this package to fill the registry."""

from automl.tasks import image, tabular, text  # noqa: F401  (each registers its task)
from automl.tasks._base import DataBundle, DataConfig, InputLimits, Task
from automl.tasks._registry import get_task, list_tasks, register_task

__all__ = ["DataBundle", "DataConfig", "InputLimits", "Task", "get_task", "list_tasks", "register_task"]
