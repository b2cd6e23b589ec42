"""Model outputs -> one plain dict per sample, as predict prints and serve answers them: class
probabilities for a model with classes, values otherwise (``Task.format_outputs``'s default)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _num(v: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    f = float(v)
    return f if math.isfinite(f) else None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


#: a binary decision: (threshold on the positive class's probability, the positive class's index)
Decision = tuple[float, int]


def decision_threshold(spec: dict[str, Any]) -> Decision | None:
    """The binary decision a preprocessing spec carries (``decision_threshold``, chosen on validation
    for the search's metric, and ``positive_class``, default 1), or None; DataError when the threshold
    is not a number in (0, 1) or the class not 0 or 1."""
    from automl.exceptions import DataError

    t = spec.get("decision_threshold")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
        raise DataError(f"preprocess.decision_threshold must be a number in (0, 1), got {str(t)[:40]}")
    positive = spec.get("positive_class", 1)
    if positive not in (0, 1) or isinstance(positive, bool):
        raise DataError(f"preprocess.positive_class must be 0 or 1, got {str(positive)[:40]}")
    return float(t), int(positive)


def format_outputs(outputs: np.ndarray, classes: list[str], top_k: int | None = None,
                   decision: Decision | None = None) -> list[dict[str, Any]]:
    """Model outputs -> one plain dict per sample.

    Classification (``classes`` given): ``label``, ``class_index``, ``probability`` and
    ``probabilities`` (the ``top_k`` most likely classes, best first, each ``label``, ``class_index``,
    ``probability``). A single logit with two classes is read as a sigmoid. With two classes and a
    ``decision`` (threshold, positive class), the label is the positive class when its probability is
    at least the threshold (``probability`` is still the label's own), and ``threshold`` is added. Regression (no
    classes): ``value`` (one output) or ``values``, as the model gives them (in the target's units).
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    out = out.reshape(out.shape[0], -1)
    if not classes:  # regression: the models de-standardise inside forward, outputs are in target units
        if out.shape[1] == 1:
            return [{"value": _num(v)} for v in out[:, 0]]
        return [{"values": [_num(v) for v in row]} for row in out]
    if out.shape[1] == 1 and len(classes) == 2:
        p1 = 1.0 / (1.0 + np.exp(-out[:, 0]))
        probs = np.stack([1.0 - p1, p1], axis=1)
    else:
        probs = _softmax(out)
    k = len(classes) if top_k is None else max(1, min(int(top_k), probs.shape[1]))
    names = [*classes, *(str(i) for i in range(len(classes), probs.shape[1]))]
    results = []
    for row in probs.tolist():  # plain Python per row: NumPy calls on 10 numbers cost more than they save
        rank = [p if math.isfinite(p) else -1.0 for p in row]  # a NaN output ranks last and reads as null
        order = sorted(range(len(row)), key=rank.__getitem__, reverse=True)[:k]  # stable: ties keep class order
        best = order[0]
        binary = decision is not None and len(row) == 2
        if decision is not None and binary:
            threshold, positive = decision
            best = positive if row[positive] >= threshold else 1 - positive
        results.append({
            "label": names[best],
            "class_index": best,
            "probability": _num(row[best]),
            "probabilities": [{"label": names[i], "class_index": i, "probability": _num(row[i])} for i in order],
            **({"threshold": decision[0]} if decision is not None and binary else {}),
        })
    return results
