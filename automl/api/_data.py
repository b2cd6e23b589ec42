"""In-memory data for ``automl.search``: a pandas DataFrame or ``(X, y)`` arrays become a file in the run
folder, so the study, ``--jobs`` workers, a resumed search and ``automl compress`` (which reloads the
data a checkpoint records) all read the same rows through the same loaders as the command line.

A table is written once as ``<out>/<study>/frame-<sha>.parquet`` (tabular; dtypes kept) or
``frame-<sha>.csv`` (text: columns ``text`` and ``label``), named by a hash of its content: the same
frame given again resumes the same study, a different one makes a new study (or, under an explicit
``study=``, is refused as different data, like a different ``--data``).
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
    if task not in ("tabular", "text"):
        raise ConfigError(f"in-memory data is for the tabular and text tasks; the {task} task reads a folder: "
                          f"pass its path as data=")
    frame, target = _frame(task, data, target)
    digest = _digest(frame)
    study = study or f"{task}-frame-{digest}"
    path = Path(out) / study / f"frame-{digest}.{'parquet' if task == 'tabular' else 'csv'}"
    if not path.exists():
        _write(frame, path, task)
    return DataSource(str(path.resolve()), target, study)  # absolute: read from any folder later (compress)


def _frame(task: str, data: Any, target: str | None) -> tuple[Any, str | None]:
    """The table to write and its target column name."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        frame.columns = [str(c) for c in frame.columns]
        if task == "text":
            return _text_frame(frame, target)
        if target is not None and target not in frame.columns:
            raise DataError(f"target={target!r} is no column of the DataFrame (columns: {_shown(frame.columns)})")
        return frame, target
    x, y = data
    name = target or ("label" if task == "text" else "y")
    if task == "text":
        texts = list(x.tolist() if hasattr(x, "tolist") else x)
        return _text_frame(pd.DataFrame({"text": texts, "label": _column(y, len(texts))}), "label")
    if isinstance(x, pd.DataFrame):
        frame = x.copy()
        frame.columns = [str(c) for c in frame.columns]
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise DataError(f"X must be 2-dimensional (rows, features), got shape {arr.shape}")
        frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    if name in frame.columns:
        raise DataError(f"X already has a column {name!r}: name the target otherwise with target=")
    frame[name] = _column(y, len(frame))
    return frame, name


def _column(y: Any, rows: int) -> Any:
    import numpy as np

    values = np.asarray(y)
    if values.ndim != 1 or len(values) != rows:
        raise DataError(f"y must be 1-dimensional with one value per row of X ({rows}), got shape {values.shape}")
    return values


def _text_frame(frame: Any, target: str | None) -> tuple[Any, str]:
    label = target or "label"
    missing = [c for c in ("text", label) if c not in frame.columns]
    if missing:
        raise DataError(f"the text task needs a 'text' column and a label column ('{label}'); missing: "
                        f"{', '.join(missing)} (columns: {_shown(frame.columns)})")
    return frame[["text", label]].rename(columns={label: "label"}).astype(str), "label"


def _shown(columns: Any, limit: int = 10) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


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


def _write(frame: Any, path: Path, task: str) -> None:
    """Write the frame atomically (a killed call never leaves half a table under the final name)."""
    from automl.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    try:
        if task == "tabular":
            frame.reset_index(drop=True).to_parquet(buf, index=False)
        else:
            buf.write(frame.to_csv(index=False).encode("utf-8"))
    except (ValueError, TypeError, ImportError) as exc:  # pyarrow refuses mixed-type object columns
        raise DataError(f"cannot store the DataFrame as a table: {str(exc).splitlines()[0][:200]}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
