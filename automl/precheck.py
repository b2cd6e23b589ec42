"""Checks of ``automl search``'s arguments that need no PyTorch, run before it is imported.

Importing torch takes seconds; a mistyped ``--data`` path or a broken space file should fail in
well under two. Each check raises the same error the full loader would raise later; anything that
cannot be checked cheaply is left to the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.exceptions import DataError


def check_data_source(task: str, source: str) -> None:
    """A ``--data`` that is neither a known name nor an existing path fails here, by task."""
    if not source:
        return  # the loaders say what the task needs
    path = Path(source).expanduser()
    key = source.lower()
    if task == "image":
        from automl.data.images import BUILTIN_IMAGE_SETS, TORCHVISION_SETS

        if key in BUILTIN_IMAGE_SETS or key in TORCHVISION_SETS:
            return
        if not path.exists():
            names = ", ".join([*BUILTIN_IMAGE_SETS, *TORCHVISION_SETS])
            raise DataError(f"--data {source}: no such folder, and not a known data set ({names})")
        if not path.is_dir():
            raise DataError(f"--data {source}: the image task expects a folder of class folders, not a file")
    elif task == "text" and not path.exists():
        raise DataError(f"--data {source}: no such file or folder")


def precheck_search(settings: Any) -> None:
    """Validate a ``SearchSettings`` without importing torch: the space file parses, the data source
    exists, and for tabular data the table reads and the target column exists."""
    from automl.space import resolve_space
    from automl.tasks import DataConfig, get_task

    task = get_task(settings.task)
    resolve_space(settings.space, settings.task)
    source = settings.data or {"image": "digits", "tabular": "wine"}.get(settings.task, "")
    check_data_source(settings.task, source)
    if settings.task == "tabular":  # reads the table with pandas: the target column and the problem
        task.prepare(DataConfig(source=source, seed=settings.seed, target=settings.target,
                                image_size=settings.image_size, problem=settings.problem))
