"""Tabular data: reading tables, inferring the problem, and THE one feature encoder.

``fit_tabular_spec(frame, target, problem)`` fits the preprocessing on the training split only and
returns a plain-typed spec (stored in best.pt and ONNX metadata)::

    {"kind": "tabular", "target": "quality", "problem": "classification" | "regression",
     "columns": [
        {"name": "age",  "type": "numeric",   "mean": 41.2, "std": 9.8, "missing_indicator": true},
        {"name": "sales", "type": "numeric",  "mean": 4.1, "std": 1.2, "missing_indicator": false,
         "transform": "log"},
        {"name": "city", "type": "onehot",    "levels": ["Bergen", "Oslo", "<missing>"]},
        {"name": "zip",  "type": "embedding", "levels": ["0150", "5003", ...], "dim": 8}],
     "num_features": F, "num_dense": D, "target_mean": 0.0, "target_std": 1.0}

``encode_frame`` / ``encode_records`` turn a table or raw records (``[{"age": 41, "city": "Oslo"}]``)
into the float32 batch (N, F) the model takes: first the D dense features in column order (numeric
values standardised with the missing ones imputed by the training mean, plus a 0/1 missing
indicator where the training split had missing values; one-hot blocks for categoricals with few
levels; an all-zero block for an unseen level), then one column per embedded categorical holding
its level id as a float (0 = unseen, 1..K = the levels), which the model casts to long.

A numeric column whose training values are all >= 0 and right-skewed (skewness above
``LOG_MIN_SKEW``: counts, money, sizes) is standardised after ``sign(v) * log1p(|v|)``
(``"transform": "log"``). Trees do not care, but a network then sees ratios as differences
(``log volume - log sales`` is the log of the mean price) and is not dominated by a few huge values;
on the txhousing table this halved the gap to gradient boosting. ``sign`` keeps the transform
defined for a negative value at prediction time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Required, TypedDict

import numpy as np

from automl.data.bounds import check_fields, check_packed, check_table
from automl.data.files import SUFFIX_HELP, table_file
from automl.exceptions import DataError

BUILTIN_TABULAR_SETS = {"wine": "classification", "breast-cancer": "classification", "diabetes": "regression"}
PROBLEMS = ("classification", "regression")
MISSING = "<missing>"
ONEHOT_MAX_LEVELS = 10  # categoricals with more levels than this get an embedding
MAX_LEVELS = 1000  # an embedded categorical keeps its most frequent levels; the rest read as unseen
CLASSIFY_MAX_UNIQUE = 20  # an integer-valued target with at most this many values is a classification
CLASSIFY_MAX_CODES = 200  # ... and so is one whose values are exactly the codes 0..K-1 (or 1..K), K up to this,
CODES_MIN_ROWS_PER_CLASS = 5  # with at least this many rows per value on average
INT_CATEGORICAL_MAX_LEVELS = 20  # an integer column of 3..this many non-negative codes is categorical
LOG_MIN_SKEW = 1.0  # a numeric column whose training values are >= 0 with a skewness above this is log-scaled
TARGET_GUESSES = ("target", "label", "y", "class")

if TYPE_CHECKING:
    from types import ModuleType

    import pandas as pd

    from automl.data import PreprocessSpec


class Column(TypedDict, total=False):
    """One feature column of a tabular spec: ``numeric`` (standardised, maybe log-scaled, with a missing
    flag), ``onehot`` (its levels) or ``embedding`` (its levels and the embedding's width)."""

    name: Required[str]
    type: Required[str]  # numeric | onehot | embedding
    mean: float
    std: float
    missing_indicator: bool
    transform: str  # "log": signed_log before standardising
    levels: list[str]
    dim: int


def read_table(source: str) -> tuple[pd.DataFrame, str | None, str | None]:
    """``--data`` -> (DataFrame, default target column, known problem) for a built-in name or a
    .csv/.tsv/.parquet file (compressed or zipped, see :mod:`automl.data.files`); DataError for
    anything unreadable or empty."""
    import pandas as pd

    key = source.lower()
    if key in BUILTIN_TABULAR_SETS and not Path(source).exists():
        return _builtin(key), "target", BUILTIN_TABULAR_SETS[key]
    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join(BUILTIN_TABULAR_SETS)
        raise DataError(f"--data {source}: no such file, and not a built-in data set ({names})")
    if path.is_dir():
        raise DataError(f"--data {source}: the tabular task expects a table file ({SUFFIX_HELP}), not a folder")
    table = table_file(path, source)
    label = f"--data {source}"
    try:
        if table.fmt == "parquet":
            check_packed(path, label)
            frame = pd.read_parquet(path)
        else:
            check_table(path, table.compression, table.sep, label)
            frame = pd.read_csv(path, sep=table.sep, compression=table.compression)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"--data {source}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise DataError(f"--data {source}: cannot read it as a table ({reason})") from None
    if len(frame) == 0:
        raise DataError(f"--data {source}: the table has no rows")
    check_fields(frame, label)
    frame.columns = [str(c) for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise DataError(f"--data {source}: duplicate column name(s): {', '.join(dupes)}")
    return frame, None, None


def _builtin(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast-cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes}[name]
    frame = loader(as_frame=True).frame
    if name != "diabetes":  # class names rather than 0/1/2
        names = loader().target_names
        frame["target"] = [str(names[int(v)]) for v in frame["target"]]
    return frame


def pick_target(frame: pd.DataFrame, target: str | None, default: str | None, source: str) -> str:
    """The target column: ``--target``, the data set's own, or an obvious name; DataError otherwise."""
    cols = list(frame.columns)
    shown = ", ".join(cols[:20]) + (", …" if len(cols) > 20 else "")
    if target is not None:
        if target not in cols:
            raise DataError(f"--data {source}: target column '{target}' not found (columns: {shown})")
        return target
    if default is not None:
        return default
    for guess in TARGET_GUESSES:
        if guess in cols:
            return guess
    raise DataError(f"--data {source}: say which column to predict with --target (columns: {shown})")


def infer_problem(y: pd.Series, override: str | None = None) -> str:
    """classification or regression: ``override`` when given; otherwise classification for a
    non-numeric target, an integer target with at most CLASSIFY_MAX_UNIQUE distinct values, or one
    whose values are exactly the codes 0..K-1 (or 1..K) with K <= CLASSIFY_MAX_CODES and at least
    CODES_MIN_ROWS_PER_CLASS rows per code on average; else regression."""
    import pandas as pd

    if override is not None:
        if override not in PROBLEMS:
            raise DataError(f"--problem {override!r}: choose classification or regression")
        return override
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    values = y.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0 or not np.all(np.mod(values, 1.0) == 0):
        return "regression"
    distinct = np.unique(values)
    if len(distinct) <= CLASSIFY_MAX_UNIQUE:
        return "classification"
    lo, k = distinct[0], len(distinct)
    codes = k <= CLASSIFY_MAX_CODES and lo in (0, 1) and distinct[-1] == lo + k - 1
    if codes and len(values) >= CODES_MIN_ROWS_PER_CLASS * k:  # a class needs examples, a quantity need not
        return "classification"
    return "regression"


def is_integer_codes(series: pd.Series) -> bool:
    """True for a numeric column whose values are non-negative integers with 3 to
    INT_CATEGORICAL_MAX_LEVELS distinct values, each seen CODES_MIN_ROWS_PER_CLASS times on average:
    codes of a category far more often than a quantity (two values are the same either way, so 0/1
    columns stay numeric)."""
    if not _is_numeric_column(series):
        return False
    values = series.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0 or values.min() < 0 or not np.all(np.mod(values, 1.0) == 0):
        return False
    k = len(np.unique(values))
    return 3 <= k <= INT_CATEGORICAL_MAX_LEVELS and len(values) >= CODES_MIN_ROWS_PER_CLASS * k


def column_kinds(frame: pd.DataFrame, target: str, categorical: tuple[str, ...] = (), numeric: tuple[str, ...] = (),
                 source: str = "") -> dict[str, str]:
    """Each feature column -> "numeric" or "categorical": text and bool columns are categorical,
    numbers numeric except integer codes (:func:`is_integer_codes`); ``categorical`` / ``numeric``
    (--categorical / --numeric) override. DataError for an unknown name, the target, or a
    non-numeric column forced numeric."""
    cols = [c for c in frame.columns if c != target]
    for flag, names in (("--categorical", categorical), ("--numeric", numeric)):
        unknown = [n for n in names if n not in cols]
        if unknown:
            why = "is the target" if unknown[0] == target else "is not a column"
            raise DataError(f"{flag} {unknown[0]}: {why} (columns: {_shown(cols)})")
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise DataError(f"column '{both[0]}' is given to both --categorical and --numeric")
    kinds: dict[str, str] = {}
    for name in cols:
        col = frame[name]
        if name in categorical:
            kinds[name] = "categorical"
        elif name in numeric:
            if not _is_numeric_column(col) and not _parses_as_numbers(col):
                raise DataError(f"--numeric {name}: the column holds text such as {_first_text(col)!r}")
            kinds[name] = "numeric"
        else:
            kinds[name] = "numeric" if _is_numeric_column(col) and not is_integer_codes(col) else "categorical"
    return kinds


def _shown(cols: list[str], limit: int = 20) -> str:
    return ", ".join(cols[:limit]) + (f" and {len(cols) - limit} more" if len(cols) > limit else "")


def _parses_as_numbers(col: pd.Series) -> bool:
    import pandas as pd

    present = col[[not _is_missing(v) for v in col.tolist()]]
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def _first_text(col: pd.Series) -> str:
    import pandas as pd

    parsed = pd.to_numeric(col, errors="coerce")
    bad = col[parsed.isna() & ~col.isna()]
    return str(bad.iloc[0])[:40] if len(bad) else ""


def class_key(value: object) -> str:
    """The string a target or categorical value is known by (bools as 'true'/'false', 3.0 as '3')."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip() == ""
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_numeric_column(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def fit_tabular_spec(frame: pd.DataFrame, target: str, problem: str,
                     kinds: dict[str, str] | None = None) -> PreprocessSpec:
    """Fit the preprocessing on ``frame`` (the training split, target included) -> plain spec.
    ``kinds`` (from :func:`column_kinds` on the whole table) says which columns are categorical."""
    import pandas as pd

    kinds = kinds if kinds is not None else column_kinds(frame, target)
    columns: list[Column] = []
    for name in frame.columns:
        if name == target:
            continue
        col = frame[name]
        if kinds.get(name) == "numeric":
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            ok = values[np.isfinite(values)]
            log = _skewed(ok)
            if log:
                ok = signed_log(ok)
            mean = float(ok.mean()) if len(ok) else 0.0
            std = float(ok.std()) if len(ok) > 1 else 0.0
            columns.append({"name": name, "type": "numeric", "mean": mean, "std": std if std > 1e-12 else 1.0,
                            "missing_indicator": bool(len(ok) < len(values)), **({"transform": "log"} if log else {})})
        else:
            keys = [MISSING if _is_missing(v) else class_key(v) for v in col.tolist()]
            counts: dict[str, int] = {}
            for k in keys:
                counts[k] = counts.get(k, 0) + 1
            if len(counts) <= ONEHOT_MAX_LEVELS:
                columns.append({"name": name, "type": "onehot", "levels": sorted(counts)})
            else:
                kept = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_LEVELS]
                levels = sorted(kept)
                dim = int(min(16, max(2, round(1.6 * len(levels) ** 0.56))))
                columns.append({"name": name, "type": "embedding", "levels": levels, "dim": dim})
    if not columns:
        raise DataError(f"the table has no feature columns besides the target '{target}'")
    dense = sum(_width(c) for c in columns if c["type"] != "embedding")
    n_emb = sum(c["type"] == "embedding" for c in columns)
    return {"kind": "tabular", "target": target, "problem": problem, "columns": columns,
            "num_features": dense + n_emb, "num_dense": dense, "target_mean": 0.0, "target_std": 1.0,
            "input_dtype": "float32"}


def _skewed(values: np.ndarray) -> bool:
    """True for non-negative values with a skewness above ``LOG_MIN_SKEW`` (and more than 2 distinct)."""
    if len(values) < 3 or values.min() < 0:
        return False
    std = values.std()
    if std <= 1e-12 or len(np.unique(values[:10_000])) <= 2:
        return False
    skew = float(np.mean(((values - values.mean()) / std) ** 3))
    return skew > LOG_MIN_SKEW


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(v) * log1p(|v|)``: monotone, defined everywhere, log1p for the non-negative values."""
    return np.sign(values) * np.log1p(np.abs(values))


def _width(col: Column) -> int:
    if col["type"] == "numeric":
        return 1 + int(col["missing_indicator"])
    if col["type"] == "onehot":
        return len(col["levels"])
    return 1


def embedding_sizes(spec: PreprocessSpec) -> list[list[int]]:
    """[[number of ids (levels + 1 for unseen), embedding dim], …] of the embedded columns, in order."""
    return [[len(c["levels"]) + 1, int(c["dim"])] for c in spec["columns"] if c["type"] == "embedding"]


def encode_frame(frame: pd.DataFrame, spec: PreprocessSpec) -> np.ndarray:
    """A DataFrame with (at least) the spec's feature columns -> float32 (N, F). DataError names the
    first missing column or the first non-numeric value in a numeric column."""
    import pandas as pd

    missing = [c["name"] for c in spec["columns"] if c["name"] not in frame.columns]
    if missing:
        raise DataError(f"missing column(s): {', '.join(repr(m) for m in missing)}")
    n = len(frame)
    dense: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for col in spec["columns"]:
        series = frame[col["name"]]
        if col["type"] == "numeric":
            values = _numeric_values(series, col["name"], pd)
            absent = ~np.isfinite(values)
            if col.get("transform") == "log":
                values = signed_log(np.where(absent, 0.0, values))
            z = (np.where(absent, col["mean"], values) - col["mean"]) / col["std"]
            dense.append(z[:, None])
            if col["missing_indicator"]:
                dense.append(absent.astype(np.float64)[:, None])
            continue
        keys = [MISSING if _is_missing(v) else class_key(v) for v in series.tolist()]
        index = {level: i for i, level in enumerate(col["levels"])}
        if col["type"] == "onehot":
            block = np.zeros((n, len(col["levels"])))
            for r, k in enumerate(keys):
                j = index.get(k)
                if j is not None:  # an unseen level is all zeros
                    block[r, j] = 1.0
            dense.append(block)
        else:
            ids.append(np.array([index.get(k, -1) + 1 for k in keys], dtype=np.float64)[:, None])
    out = np.concatenate(dense + ids, axis=1) if dense or ids else np.zeros((n, 0))
    return np.ascontiguousarray(out, dtype=np.float32)


def _numeric_values(series: pd.Series, name: str, pd: ModuleType) -> np.ndarray:
    if _is_numeric_column(series):
        return series.to_numpy(dtype=float)
    raw = series.tolist()
    values = np.empty(len(raw))
    for i, v in enumerate(raw):
        if _is_missing(v):
            values[i] = np.nan
            continue
        if isinstance(v, (bool, np.bool_)):
            values[i] = float(v)
            continue
        try:
            values[i] = float(v)
        except (TypeError, ValueError):
            raise DataError(f"row {i}: column '{name}' must be a number, got {str(v)[:40]!r}") from None
        if math.isinf(values[i]):
            raise DataError(f"row {i}: column '{name}' must be a finite number, got {str(v)[:40]!r}")
    return values


def encode_records(records: list[dict[str, object]], spec: PreprocessSpec) -> np.ndarray:
    """Raw records (dicts column -> value; None or "" is a missing value) -> float32 (N, F), as the
    model was trained on. Extra keys (the target, ids) are ignored; a missing key is a DataError."""
    import pandas as pd

    if not isinstance(records, list) or not records:
        raise DataError("no records given")
    names = [c["name"] for c in spec["columns"]]
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"record {i}: expected an object of column -> value, got {type(rec).__name__}")
        absent = [n for n in names if n not in rec]
        if absent:
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise DataError(f"record {i}: missing column(s): {', '.join(repr(a) for a in absent[:5])}{more}")
        rows.append([rec[n] for n in names])
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    try:
        return encode_frame(frame, spec)
    except DataError as exc:
        raise DataError(str(exc).replace("row ", "record ", 1)) from None
