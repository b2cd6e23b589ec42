"""``automl predict``: offline inference with an ``.onnx`` file or a ``best.pt`` checkpoint.

Inputs are read by the task that owns the model's preprocessing kind (``Task.read_inputs``), then go
through the same preprocessing as training and serving (``Task.encode_inputs``) and the same output
formatting as the server (``Task.format_outputs``):

- image: image files, or folders of image files;
- tabular: ``.csv`` / ``.tsv`` / ``.parquet`` files (one sample per row; the target column, when
  present, is ignored) or JSON records given inline (``'{"col": 1.0, ...}'``);
- text: ``.txt`` files (one sample per non-empty line), ``.csv``/``.tsv`` files with a ``text``
  column, ``-`` for lines on stdin, or the text itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl.exceptions import ArtifactError, DataError

CHUNK = 256  # samples per model call


@dataclass
class Predictor:
    """A loaded model of either format with what predict needs to know about it."""

    path: Path
    format: str  # onnx | checkpoint
    task: str
    classes: list[str]
    spec: dict[str, Any]
    variant: str = ""
    _onnx: Any = None
    _torch: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def run(self, raw: list[Any]) -> np.ndarray:
        """Raw samples -> model outputs (N, K), through the shared preprocessing."""
        from automl.runtime.inference import raw_to_model_input

        x = raw_to_model_input(raw, self.spec)
        if self._onnx is not None:
            return self._onnx.run(self._onnx.input.check(x))
        import torch

        with torch.no_grad():
            return self._torch(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()


def load_predictor(path: str | Path, threads: int = 0) -> Predictor:
    """An ``.onnx`` file (with automl metadata) or a ``best.pt`` checkpoint, ready to predict."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: model file not found")
    if path.suffix.lower() == ".onnx":
        from automl.runtime.inference import OnnxModel

        m = OnnxModel(path, threads=threads, max_samples=1 << 30)
        return Predictor(path, "onnx", m.task, m.classes, m.spec, str(m.meta.get("variant", "")), _onnx=m,
                         info={"provider": m.provider, "sha256": m.sha256})
    if path.suffix.lower() in (".pt", ".pth"):
        from automl.artifacts import load_checkpoint, model_from_checkpoint

        ckpt = load_checkpoint(path)
        spec = dict(ckpt["preprocess"])
        classes = [str(c) for c in spec.get("classes") or []]
        model = model_from_checkpoint(ckpt, str(path))
        return Predictor(path, "checkpoint", str(ckpt["task"]), classes, spec, "checkpoint", _torch=model,
                         info={"provider": "torch-cpu"})
    raise ArtifactError(f"{path}: expected an .onnx file or a best.pt checkpoint")


def read_inputs(items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Command-line INPUTS -> (a name per sample, the raw samples), read by the task of the model's kind."""
    from automl.runtime.inference import task_of

    if not items:
        raise DataError("no inputs given")
    names, raw = task_of(spec).read_inputs(items, spec)
    if not raw:
        raise DataError("the inputs hold no samples")
    return names, raw


def predict(model: str | Path, inputs: list[str], top_k: int | None = None, threads: int = 0) -> dict[str, Any]:
    """Predict every sample of ``inputs``; a JSON-able dict with the model and one row per sample."""
    from automl.runtime.inference import DEFAULT_TOP_K, task_of
    from automl.tasks import decision_threshold

    if top_k is not None and top_k < 1:
        raise DataError(f"--top-k must be >= 1, got {top_k}")
    predictor = load_predictor(model, threads=threads)
    names, raw = read_inputs(list(inputs), predictor.spec)
    task = task_of(predictor.spec)
    decision = decision_threshold(predictor.spec)  # binary: the threshold chosen on validation, if any
    notes, extras = task.input_notes(raw, predictor.spec)  # e.g. images resized to the model's input size
    rows: list[dict[str, Any]] = []
    for start in range(0, len(raw), CHUNK):
        out = predictor.run(raw[start : start + CHUNK])
        k = top_k or DEFAULT_TOP_K  # a task of its own may keep the signature without a decision
        preds = (task.format_outputs(out, predictor.classes, k) if decision is None
                 else task.format_outputs(out, predictor.classes, k, decision))
        rows += [{"input": n, **p} for n, p in zip(names[start : start + CHUNK], preds, strict=True)]
    for row, extra in zip(rows, extras, strict=True):
        if extra:
            row.update(extra)
    return {"model": str(predictor.path), "format": predictor.format, "task": predictor.task,
            "variant": predictor.variant, **predictor.info, "predictions": rows, "notes": notes}


