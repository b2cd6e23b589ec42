"""pandas tables into and out of a task: the in-memory data of ``automl.search`` (a DataFrame or an
``(X, y)`` pair -> the table a task's loader reads) and the Python objects ``automl.Predictor`` takes
(a DataFrame, a 2-D array -> dict records). The tasks' hooks (``Task.in_memory_table``,
``Task.python_inputs``) call these; nothing here knows a task's name."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.exceptions import DataError


def shown(columns: Any, limit: int = 10) -> str:
    """Column names for an error message: the first ``limit`` and how many more."""
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def column(y: Any, rows: int) -> np.ndarray:
    """``y`` as a 1-D array of ``rows`` values; DataError otherwise."""
    values = np.asarray(y)
    if values.ndim != 1 or len(values) != rows:
        raise DataError(f"y must be 1-dimensional with one value per row of X ({rows}), got shape {values.shape}")
    return values


def feature_table(data: Any, target: str | None) -> tuple[Any, str | None]:
    """A DataFrame (``target`` one of its columns, or None) or an ``(X, y)`` pair (X a 2-D array or a
    DataFrame; y becomes the column ``target``, default ``y``) -> (the table, its target column)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        frame.columns = [str(c) for c in frame.columns]
        if target is not None and target not in frame.columns:
            raise DataError(f"target={target!r} is no column of the DataFrame (columns: {shown(frame.columns)})")
        return frame, target
    x, y = data
    name = target or "y"
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
    frame[name] = column(y, len(frame))
    return frame, name


def text_table(data: Any, target: str | None) -> tuple[Any, str]:
    """A DataFrame with a ``text`` column and the label column ``target`` (default ``label``), or a pair
    (texts, labels) -> the table of columns ``text`` and ``label`` (strings) and ``"label"``."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        frame.columns = [str(c) for c in frame.columns]
    else:
        x, y = data
        texts = list(x.tolist() if hasattr(x, "tolist") else x)
        frame, target = pd.DataFrame({"text": texts, "label": column(y, len(texts))}), "label"
    label = target or "label"
    missing = [c for c in ("text", label) if c not in frame.columns]
    if missing:
        raise DataError(f"the text task needs a 'text' column and a label column ('{label}'); missing: "
                        f"{', '.join(missing)} (columns: {shown(frame.columns)})")
    return frame[["text", label]].rename(columns={label: "label"}).astype(str), "label"


def records(frame: Any) -> list[dict[str, Any]]:
    """DataFrame rows -> dict records, NaN as None (a missing value, as in a table file)."""
    obj = frame.astype(object)
    return obj.where(obj.notna(), None).to_dict("records")


def array_records(x: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """A 2-D array whose columns are the features ``names`` in order -> dict records."""
    import pandas as pd

    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(f"an array of features must have shape (rows, {len(names)}), got {x.shape}")
    return records(pd.DataFrame(x, columns=names))
