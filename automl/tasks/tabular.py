"""The tabular task: an MLP over encoded table rows, for classification (accuracy) or regression (RMSE).

Whether the target is a classification or a regression is read from the data (``DataConfig.problem``
overrides), so ``metric`` and ``direction`` are set per instance by ``prepare`` / ``load_data``.
Regression trains on the MSE of standardised targets (the training split's mean and std, kept in the
preprocessing spec), while the model itself outputs values in the target's own units.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.data.bundle import DataBundle, DataConfig
from automl.data.splits import train_val, train_val_test
from automl.exceptions import DataError
from automl.tasks._base import Reference, Task, spec_int, spec_list
from automl.tasks._metrics import outputs_metric, proba_columns
from automl.tasks._registry import register_task

if TYPE_CHECKING:
    import pandas as pd
    import torch

MAX_INT = 10**38  # an integer beyond float32's range (3.4e38) cannot be a model input
COLUMN_TYPES = ("numeric", "onehot", "embedding")


@register_task("tabular")
class TabularTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = "tabular classification or regression with neural nets (wine, breast-cancer, diabetes, CSV, parquet)"
    default_model = "mlp"
    default_data = "wine"
    cross_validation = True
    test_data_unsupported = None
    has_reference = True
    problem_types = ("binary", "multiclass", "regression")

    def __init__(self) -> None:
        self._table: tuple[str, pd.DataFrame, str | None, str | None] | None = None
        self._target_std = 1.0

    def _read(self, source: str) -> tuple[pd.DataFrame, str | None, str | None]:
        from automl.data.tabular import read_table

        if self._table is None or self._table[0] != source:
            if not source:
                raise DataError(
                    "the tabular task needs --data: wine, breast-cancer, diabetes or a .csv/.tsv/.parquet file"
                )
            self._table = (source, *read_table(source))
        return self._table[1], self._table[2], self._table[3]

    def _target_and_problem(self, cfg: DataConfig) -> tuple[pd.DataFrame, str, str]:
        """(frame without rows whose target is missing, target column, problem)."""
        from automl.data.tabular import infer_problem, pick_target

        frame, default_target, known = self._read(cfg.source)
        target = pick_target(frame, cfg.target, default_target, cfg.source)
        frame = frame[frame[target].notna()].reset_index(drop=True)
        if len(frame) == 0:
            raise DataError(f"--data {cfg.source}: target column '{target}' has no values")
        values = frame[target]
        if values.nunique() < 2:
            raise DataError(
                f"--data {cfg.source}: target column '{target}' has only one value ({values.iloc[0]!r}); "
                f"nothing to learn"
            )
        problem = infer_problem(values, cfg.problem or known)
        return frame, target, problem

    def _test_frame(self, cfg: DataConfig, train: pd.DataFrame, target: str) -> pd.DataFrame:
        """The --test-data table: the training file's columns (extra ones dropped), rows with a target."""
        from automl.data.splits import test_file_error
        from automl.data.tabular import read_table

        assert cfg.test_source
        try:
            test, _, _ = read_table(cfg.test_source)
        except DataError as exc:
            raise test_file_error(exc, cfg.test_source) from None
        missing = [c for c in train.columns if c not in test.columns]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            shown = ", ".join(repr(c) for c in missing[:5]) + more
            raise DataError(f"--test-data {cfg.test_source}: column(s) {shown} of the training file are missing")
        test = test[list(train.columns)]
        test = test[test[target].notna()]
        if len(test) == 0:
            raise DataError(f"--test-data {cfg.test_source}: no row has a value in target column '{target}'")
        return test

    def check_source(self, source: str, target: str | None) -> None:
        """A built-in set's name or an existing table file, within the data bounds, whose CSV/TSV
        header holds ``--target``."""
        from automl.data.bounds import check_data_file
        from automl.data.tabular import BUILTIN_TABULAR_SETS

        if not source:
            return
        path = Path(source).expanduser()
        if source.lower() not in BUILTIN_TABULAR_SETS or path.exists():
            if not path.exists():
                names = ", ".join(BUILTIN_TABULAR_SETS)
                raise DataError(f"--data {source}: no such file, and not a built-in data set ({names})")
            if path.is_dir():
                raise DataError(f"--data {source}: the tabular task expects a .csv, .tsv or .parquet file, "
                                "not a folder")
        check_data_file(source)  # sizes, lines, fields, columns: a hostile file fails before torch is imported
        check_target_column(source, target)

    def reference_model(self, bundle: DataBundle) -> Reference:
        """scikit-learn's ``HistGradientBoosting{Classifier,Regressor}`` with default settings
        (``random_state=0``) on the encoded features (embedded categoricals as categorical features)."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        spec = bundle.meta["preprocess"]
        n_dense = int(spec.get("num_dense", bundle.x_train.shape[1]))
        n_features = int(bundle.x_train.shape[1])
        categorical = [i for i in range(n_dense, n_features)] or None  # embedded columns hold level ids
        model: HistGradientBoostingClassifier | HistGradientBoostingRegressor
        if self.metric_spec.labels:
            model = HistGradientBoostingClassifier(random_state=0, categorical_features=categorical)
            name = "HistGradientBoostingClassifier (sklearn defaults)"
        else:
            model = HistGradientBoostingRegressor(random_state=0, categorical_features=categorical)
            name = "HistGradientBoostingRegressor (sklearn defaults)"

        def features(x: torch.Tensor) -> np.ndarray:
            a = x.detach().cpu().numpy().astype(np.float64)
            if categorical:  # level ids are small non-negative integers, as HGB's categorical support needs
                a[:, categorical] = np.clip(a[:, categorical], 0, None)
            return a

        model.fit(features(bundle.x_train), bundle.y_train.detach().cpu().numpy())
        if isinstance(model, HistGradientBoostingClassifier):  # probabilities: every metric takes them
            n = int(bundle.meta["num_classes"])
            return name, lambda x: proba_columns(model.predict_proba(features(x)), model.classes_, n)
        return name, lambda x: model.predict(features(x))

    def _set_problem(self, problem: str, n_classes: int = 0) -> None:
        """The target is a ``problem`` (classification or regression) of ``n_classes`` classes: the
        chosen metric must fit it (``Task.fit_metric``), or the default metric of that kind is used."""
        if problem == "regression":
            self.fit_metric("regression")
        else:
            self.fit_metric("binary" if n_classes == 2 else "multiclass", f"{n_classes} classes")

    def prepare(self, cfg: DataConfig) -> None:
        from automl.data.tabular import class_key

        frame, target, problem = self._target_and_problem(cfg)
        n = len({class_key(v) for v in frame[target].tolist()}) if problem == "classification" else 0
        self._set_problem(problem, n)

    def load_data(self, cfg: DataConfig) -> DataBundle:
        import pandas as pd
        import torch

        from automl.data.tabular import class_key, column_kinds, encode_frame, fit_tabular_spec

        frame, target, problem = self._target_and_problem(cfg)
        kinds = column_kinds(frame, target, tuple(cfg.categorical), tuple(cfg.numeric), cfg.source)
        n_train = len(frame)
        if cfg.test_source:  # the official test rows follow the training file's rows
            frame = pd.concat([frame, self._test_frame(cfg, frame, target)], ignore_index=True)
        if problem == "classification":
            keys = [class_key(v) for v in frame[target].tolist()]
            classes = sorted(set(keys[:n_train]), key=_class_order)
            index = {c: i for i, c in enumerate(classes)}
            unseen = next((k for k in keys[n_train:] if k not in index), None)
            if unseen is not None:
                raise DataError(f"--test-data {cfg.test_source}: class {unseen[:40]!r} of column '{target}' is "
                                f"not in the training file --data {cfg.source}")
            y = np.array([index[k] for k in keys], dtype=np.int64)
            strata = y
            self._set_problem(problem, len(classes))
        else:
            numeric = pd.to_numeric(frame[target], errors="coerce")
            if numeric.isna().any():
                bad = frame[target][numeric.isna()].iloc[0]
                raise DataError(
                    f"--data {cfg.source}: target column '{target}' has a non-numeric value {str(bad)[:40]!r}; "
                    f"a regression target must be numeric (or use --problem classification)"
                )
            classes = []
            self._set_problem(problem)
            y = numeric.to_numpy(dtype=np.float32)
            strata = np.zeros(len(y), dtype=np.int64)
        if cfg.test_source:
            tr, va = train_val(strata[:n_train], cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.source, "rows")
            te = np.arange(n_train, len(frame), dtype=np.int64)
        else:
            tr, va, te = train_val_test(strata, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.source, "rows")
        # Preprocessing is fitted on the training split only.
        spec = fit_tabular_spec(frame.iloc[tr], target, problem, kinds)
        if problem == "regression":
            spec["target_mean"] = float(y[tr].mean())
            spec["target_std"] = float(max(y[tr].std(), 1e-6))
            self._target_std = spec["target_std"]

        def x(idx: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(encode_frame(frame.iloc[idx], spec))

        meta = {
            "task": self.name,
            "input_shape": [int(spec["num_features"])],
            "num_classes": len(classes) if classes else 1,
            "classes": list(classes),
            "problem": problem,
            "preprocess": spec,
            "notes": [_types_note(target, problem, len(classes), kinds, cfg)] + (
                [f"test split: the {len(te)} rows of --test-data {cfg.test_source}; --data {cfg.source} is split "
                 f"into {len(tr)} training and {len(va)} validation rows"] if cfg.test_source else []),
        }
        return DataBundle.from_indices(x, y, (tr, va, te), meta)

    def loss_fn(self, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.metric_spec.labels:
            return super().loss_fn(label_smoothing)
        import torch.nn.functional as F

        scale = float(self._target_std) ** 2

        def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # Targets are in their own units; dividing by the training variance is the MSE of
            # standardised targets, so learning rates do not depend on the target's scale.
            if pred.dim() == 3:  # (N, k, 1): k ensemble members in train mode -> mean of their MSEs
                return (pred.float().reshape(len(y), -1) - y.float().reshape(-1, 1)).pow(2).mean() / scale
            return F.mse_loss(pred.float().reshape(-1), y.float().reshape(-1)) / scale

        return mse

    # --- in-memory data, the model card -----------------------------------------------------------
    memory_table_format = "parquet"  # keeps the column dtypes

    def in_memory_table(self, data: Any, target: str | None) -> tuple[Any, str | None]:
        """A DataFrame (``target`` one of its columns) or ``(X, y)`` (y becomes column ``target``, default ``y``)."""
        from automl.tasks._frames import feature_table

        return feature_table(data, target)

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        return "tabular-classification" if data.get("classes") else "tabular-regression"

    # --- raw inputs -------------------------------------------------------------------------------
    raw_json_type = dict
    json_hint = "records (objects) or rows of numbers"

    def feature_names(self, spec: dict[str, Any]) -> list[str]:
        return [str(c["name"]) for c in spec.get("columns") or []]

    def python_inputs(self, data: Any, spec: dict[str, Any]) -> list[Any]:
        """Besides the defaults: a 2-D array whose columns are the training features in their order."""
        if isinstance(data, np.ndarray):
            from automl.tasks._frames import array_records

            return array_records(data, self.feature_names(spec))
        return super().python_inputs(data, spec)

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """``.csv``/``.tsv``/``.parquet`` files (one sample a row; the target column is dropped) or
        inline JSON records (``'{"col": 1.0, ...}'``)."""
        import json
        from pathlib import Path

        from automl.data.preprocess import TABLE_FILES, read_input_table

        names: list[str] = []
        raw: list[Any] = []
        target = spec.get("target")
        for item in items:
            if item.lstrip().startswith("{"):
                try:
                    record = json.loads(item)
                except json.JSONDecodeError as exc:
                    raise DataError(f"inline record is not valid JSON ({exc.msg})") from None
                names.append(f"record {len(raw) + 1}")
                raw.append(record)
                continue
            p = Path(item)
            if not p.is_file():
                raise DataError(f"{item}: file not found (tabular models take {', '.join(TABLE_FILES)} files "
                                "or inline JSON records)")
            frame = read_input_table(p)
            if isinstance(target, str) and target in frame.columns:
                frame = frame.drop(columns=[target])
            records = frame.to_dict("records")
            names += [f"{p.name}:{i + 1}" for i in range(len(records))]
            raw += records
        return names, raw

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        """Records (column -> value) -> the encoded float32 rows (N, F)."""
        from automl.data.tabular import encode_records

        numeric = [c["name"] for c in spec["columns"] if c["type"] == "numeric"]
        for i, rec in enumerate(raw):
            if isinstance(rec, dict):
                for name in numeric:
                    v = rec.get(name)
                    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                        raise DataError(f"record {i}: column '{name}' holds a number too large "
                                        f"({len(str(abs(v)))} digits; at most about 1e38)")
        return encode_records(raw, spec)

    def validate_spec(self, spec: dict[str, Any]) -> None:
        import math

        columns = spec_list(spec, "columns", dict, 1, 100_000)
        for i, col in enumerate(columns):
            kind = col.get("type")
            ok = isinstance(col.get("name"), str) and len(col["name"]) <= 1000 and kind in COLUMN_TYPES
            if ok and kind == "numeric":
                ok = (all(isinstance(col.get(k), (int, float)) and math.isfinite(col[k]) for k in ("mean", "std"))
                      and col["std"] > 0 and isinstance(col.get("missing_indicator"), bool)
                      and col.get("transform", "none") in ("none", "log"))
            elif ok:
                levels = col.get("levels")
                ok = (isinstance(levels, list) and len(levels) <= 100_000 and all(isinstance(v, str) for v in levels)
                      and (kind == "onehot" or (isinstance(col.get("dim"), int) and 1 <= col["dim"] <= 1024)))
            if not ok:
                raise DataError(f"preprocess.columns[{i}] is not a valid column ({str(col)[:80]})")
        spec_int(spec, "num_features", 1, 10_000_000)

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "tabular", "columns": [{"name": c["name"], "type": c["type"],
                                                **({"levels": c["levels"]} if "levels" in c else {})}
                                               for c in spec["columns"]],
                "target": spec.get("target"), "problem": spec.get("problem")}

    def metric_fn(self, threshold: float | None = None) -> Callable[[torch.Tensor, torch.Tensor], float]:
        if self.metric_spec.labels:
            return super().metric_fn(threshold)
        if self.metric != "rmse":
            return outputs_metric(self.metric_spec)

        def rmse(pred: torch.Tensor, y: torch.Tensor) -> float:
            if not len(y):
                return 0.0
            diff = pred.float().reshape(-1) - y.float().reshape(-1)
            return float(diff.pow(2).mean().sqrt().item())

        return rmse


def _types_note(target: str, problem: str, n_classes: int, kinds: dict[str, str], cfg: DataConfig) -> str:
    """One line saying what was inferred, so a wrong guess is seen (and the flags that change it)."""
    cat = [c for c, k in kinds.items() if k == "categorical"]
    shown = ", ".join(cat[:8]) + (f" and {len(cat) - 8} more" if len(cat) > 8 else "")
    what = f"classification of {n_classes} classes" if problem == "classification" else "regression"
    how = "as given" if cfg.problem else "inferred; --problem changes it"
    return (f"target '{target}': {what} ({how}); {len(kinds) - len(cat)} numeric and {len(cat)} categorical "
            f"column(s){': ' + shown if cat else ''} (--categorical / --numeric change them)")


def _class_order(key: str) -> tuple[int, float, str]:
    """Numeric class names sort as numbers (2 before 10), the rest alphabetically after them."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


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
