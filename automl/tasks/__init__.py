"""Tasks: each public module of this package registers one task, found on first use (as model
families are), so a new task is one new file here. See ``_base.Task`` for what a task owns."""

from automl.data.bundle import DataBundle, DataConfig, InputLimits  # their old home: kept for callers
from automl.tasks._base import Reference, Task
from automl.tasks._metrics import (
    Metric,
    best_threshold,
    gap_text,
    get_metric,
    list_metrics,
    register_metric,
    unregister_metric,
)
from automl.tasks._outputs import decision_threshold, format_outputs
from automl.tasks._registry import get_task, list_tasks, register_task, unregister_task

__all__ = ["DataBundle", "DataConfig", "InputLimits", "Metric", "Reference", "Task", "best_threshold",
           "decision_threshold", "format_outputs", "gap_text",
           "get_metric", "get_task", "list_metrics", "list_tasks", "register_metric", "register_task",
           "unregister_metric", "unregister_task"]
