"""``automl.Predictor``: predictions in Python from an ONNX file or a best.pt, through the same loading,
preprocessing and output formatting as ``automl predict`` and ``automl serve``
(``automl.runtime.predict``, ``automl.runtime.inference`` and the model's task)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from automl.exceptions import DataError

CHUNK = 256  # samples per model call, as automl predict


class Predictor:
    """A model ready to predict: an automl ``.onnx`` file (ONNX Runtime) or a ``best.pt`` (PyTorch).

    ``predict`` and ``predict_proba`` take raw samples of the model's task:

    - tabular: a pandas DataFrame (the target column, if present, is ignored), a 2-D array whose
      columns are the training features in their order, a list of dict records, or a table file path;
    - text: a string or a list of strings (the texts themselves);
    - image: a path (file or folder), a list of paths, PIL images or encoded image bytes.

    >>> p = Predictor("runs/tabular-frame-0123abcd4567/best.pt")  # doctest: +SKIP
    >>> p.predict(df.head(2))                                      # doctest: +SKIP
    array(['hi', 'lo'], dtype=object)
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        from automl.runtime.inference import task_of
        from automl.runtime.predict import load_predictor

        self._model = load_predictor(Path(path), threads=threads)
        self._task = task_of(self._model.spec)

    def __repr__(self) -> str:
        return f"<automl Predictor {self.path} ({self.format}, {self.task}, {len(self.classes)} classes)>"

    @property
    def path(self) -> Path:
        return self._model.path

    @property
    def format(self) -> str:
        """``onnx`` or ``checkpoint``."""
        return self._model.format

    @property
    def task(self) -> str:
        return self._model.task

    @property
    def classes(self) -> list[str]:
        """Class names in output order (empty for a regression)."""
        return list(self._model.classes)

    @property
    def features(self) -> list[str]:
        """The named features a 2-D array's columns stand for, in order (tabular; else empty)."""
        return self._task.feature_names(self._model.spec)

    def samples(self, data: Any) -> list[Any]:
        """``data`` -> the raw samples the task encodes (records, texts, images): ``Task.python_inputs``."""
        raw = self._task.python_inputs(data, self._model.spec)
        if not raw:
            raise DataError("no samples given")
        return raw

    def encode(self, data: Any) -> np.ndarray:
        """The model's input batch for ``data``, preprocessed exactly as in training (what
        ``Result.best_model`` takes, as a tensor)."""
        from automl.runtime.inference import raw_to_model_input

        return raw_to_model_input(self.samples(data), self._model.spec)

    def outputs(self, data: Any) -> np.ndarray:
        """The model's raw outputs (N, K): logits for classification, values for regression."""
        raw = self.samples(data)
        return np.concatenate([self._model.run(raw[i:i + CHUNK]) for i in range(0, len(raw), CHUNK)])

    def _rows(self, data: Any) -> list[dict[str, Any]]:
        return self._task.format_outputs(self.outputs(data), self.classes, None)

    def predict(self, data: Any) -> np.ndarray:
        """One prediction per sample: the class name (classification) or the value (regression)."""
        rows = self._rows(data)
        if self.classes:
            return np.array([r["label"] for r in rows], dtype=object)
        return np.array([r["value"] if "value" in r else r["values"] for r in rows], dtype=np.float64)

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (N, len(classes)), columns in ``classes`` order; DataError for a regression."""
        if not self.classes:
            raise DataError(f"{self.path}: a regression model has no class probabilities; use predict()")
        rows = self._rows(data)
        probs = np.zeros((len(rows), len(self.classes)))
        for i, r in enumerate(rows):
            for p in r["probabilities"]:
                if p["class_index"] < len(self.classes):
                    probs[i, p["class_index"]] = np.nan if p["probability"] is None else p["probability"]
        return probs
