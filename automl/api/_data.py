"""In-memory data for ``automl.search``: a pandas DataFrame or ``(X, y)`` arrays become a file in the run
folder, so the study, ``--jobs`` workers, a resumed search and ``automl compress`` (which reloads the
data a checkpoint records) all read the same rows through the same loaders as the command line.

The task makes the table (``Task.in_memory_table``: tabular keeps the frame, text makes columns ``text``
and ``label``; a task that reads a folder refuses) and names its format (``Task.memory_table_format``:
parquet keeps dtypes, or csv). It is written once as ``<out>/<study>/frame-<sha>.<format>``, named by a
hash of its content: the same frame given again resumes the same study, a different one makes a new
study (or, under an explicit ``study=``, is refused as different data, like a different ``--data``).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, DataError

HASH_CHARS = 12  # hex characters of the content hash in file and study names


@dataclass(frozen=True)
class DataSource:
    """What the search is given: ``source`` for ``--data``, the target column, the study name to use."""

    source: str | None
    target: str | None
    study: str | None


def is_in_memory(data: object) -> bool:
    """Whether ``data`` is a DataFrame or an ``(X, y)`` pair rather than a path or a built-in name."""
    import pandas as pd

    return isinstance(data, pd.DataFrame) or (isinstance(data, (tuple, list)) and len(data) == 2)


def resolve_data(task: str, data: object, target: str | None, out: str | Path, study: str | None) -> DataSource:
    """``data=`` of ``automl.search`` -> a ``DataSource``: a path or name passes through; a DataFrame or
    ``(X, y)`` is written into the run folder (see the module docstring). ConfigError for any other type."""
    if data is None or isinstance(data, (str, os.PathLike)):
        return DataSource(None if data is None else os.fspath(data), target, study)
    if not is_in_memory(data):
        raise ConfigError(f"data= must be a path, a built-in data set name, a pandas DataFrame or an (X, y) pair, "
                          f"got {type(data).__name__}")
    from automl.tasks import get_task

    owner = get_task(task)
    frame, target = owner.in_memory_table(data, target)  # ConfigError for a task that reads a folder
    digest = _digest(frame)
    study = study or f"{task}-frame-{digest}"
    path = Path(out) / study / f"frame-{digest}.{owner.memory_table_format}"
    if not path.exists():
        _write(frame, path)
    return DataSource(str(path.resolve()), target, study)  # absolute: read from any folder later (compress)


def _digest(frame: Any) -> str:
    """A hash of the frame's column names, dtypes and values (not its index)."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    try:
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError as exc:  # cells that cannot be hashed (lists, dicts)
        raise DataError(f"the DataFrame holds values that are no table cells ({exc})") from None
    return h.hexdigest()[:HASH_CHARS]


def _write(frame: Any, path: Path) -> None:
    """Write the frame atomically (a killed call never leaves half a table under the final name)."""
    from automl.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    try:
        if path.suffix == ".parquet":
            frame.reset_index(drop=True).to_parquet(buf, index=False)
        else:
            buf.write(frame.to_csv(index=False).encode("utf-8"))
    except (ValueError, TypeError, ImportError) as exc:  # pyarrow refuses mixed-type object columns
        raise DataError(f"cannot store the DataFrame as a table: {str(exc).splitlines()[0][:200]}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
