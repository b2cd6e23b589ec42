"""Checks of ``automl search``'s arguments that need no PyTorch, run before it is imported.

Importing torch takes seconds; a mistyped ``--data`` path or a broken space file should fail in
well under two. Each check raises the same error the full loader would raise later; anything that
cannot be checked cheaply is left to the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from automl.exceptions import DataError

if TYPE_CHECKING:
    from automl.study import SearchSettings


def precheck_search(settings: SearchSettings) -> None:
    """Validate a ``SearchSettings`` without importing torch: the task name, the space file parses,
    and the task's own checks of the data source (``Task.check_source``: it exists, and for a
    CSV/TSV table the ``--target`` column is in its header)."""
    from automl.search.space import resolve_space
    from automl.tasks import get_task

    task = get_task(settings.task)
    source = settings.data or task.default_data
    task.check_source(source, settings.target)  # paths, data bounds, the --target column: by the task
    test = getattr(settings, "test_data", None)
    if test and not Path(test).expanduser().is_file():
        raise DataError(f"--test-data {test}: no such file")
    # Last: a space parses before torch is imported, but checking its ranges against what each model
    # family can build discovers the families (torch), so the data and target checks come first.
    resolve_space(settings.space, settings.task)
