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
    elif task == "tabular":
        from automl.data.tabular import BUILTIN_TABULAR_SETS

        if key in BUILTIN_TABULAR_SETS and not path.exists():
            return
        if not path.exists():
            names = ", ".join(BUILTIN_TABULAR_SETS)
            raise DataError(f"--data {source}: no such file, and not a built-in data set ({names})")
        if path.is_dir():
            raise DataError(f"--data {source}: the tabular task expects a .csv, .tsv or .parquet file, not a folder")


def check_target_column(source: str, target: str | None) -> None:
    """``--target`` must name a column of a .csv/.tsv file's header (read with the csv module: pandas
    alone takes a second to import). Other files are left to the loader."""
    import csv
    from types import SimpleNamespace

    from automl.data.bounds import DataLimits
    from automl.data.tabular import pick_target

    path = Path(source).expanduser()
    if target is None or not path.is_file() or path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return
    try:
        with path.open(newline="", encoding="utf-8") as fh:  # one line, of bounded length (AUTOML_MAX_LINE_BYTES)
            line = fh.readline(DataLimits.from_env().max_line_bytes)
            header = next(csv.reader([line], delimiter="\t" if path.suffix.lower() == ".tsv" else ","), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the loader gives the full message
    if header:
        pick_target(SimpleNamespace(columns=[h.strip() for h in header]), target, None, source)


def precheck_search(settings: Any) -> None:
    """Validate a ``SearchSettings`` without importing torch: the task name, the space file parses,
    the data source exists, and for a CSV/TSV file the ``--target`` column is in its header."""
    from automl.search.space import resolve_space
    from automl.tasks import get_task

    get_task(settings.task)
    source = settings.data or {"image": "digits", "tabular": "wine"}.get(settings.task, "")
    check_data_source(settings.task, source)
    if settings.task in ("tabular", "text"):
        from automl.data.bounds import check_data_file

        check_data_file(source)  # sizes, lines, fields, columns: a hostile file fails before torch is imported
    test = getattr(settings, "test_data", None)
    if test and not Path(test).expanduser().is_file():
        raise DataError(f"--test-data {test}: no such file")
    if settings.task == "tabular":
        check_target_column(source, settings.target)
    # Last: a space parses before torch is imported, but checking its ranges against what each model
    # family can build discovers the families (torch), so the data and target checks come first.
    resolve_space(settings.space, settings.task)
