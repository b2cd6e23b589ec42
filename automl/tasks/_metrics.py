"""The metrics a task can report (``Task.metric`` names one): what a score means, beyond its name.

A ``Metric`` says which way is better, whether predictions are class labels (then splits and
cross-validation folds are stratified by class, distillation applies and the report draws a confusion
matrix) and how a difference to the classic reference is stated. ``score`` computes it on NumPy
predictions (the reference model's); training computes it on tensors (``Task.metric_fn``).
A task with a metric of its own registers it with ``register_metric``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric: its name, direction and what its predictions are."""

    name: str
    #: ``maximize`` or ``minimize``
    direction: str
    #: predictions are class indices (accuracy) rather than values (rmse)
    labels: bool
    #: NumPy predictions and targets -> the score (0.0 for no rows)
    score_fn: Callable[[np.ndarray, np.ndarray], float]
    #: how a difference to the reference is stated: ``points`` (x 100) or ``percent`` of the reference
    gap: str = "points"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def score(self, pred: np.ndarray, y: np.ndarray) -> float:
        """The metric of predictions ``pred`` against targets ``y`` (0.0 when there are none)."""
        return float(self.score_fn(pred, y)) if len(y) else 0.0

    def gap_text(self, diff: float, ref: float) -> str:
        """``diff`` (best minus reference) in words: "2.0 points above", "3.5% below"."""
        if self.gap == "percent":
            rel = diff / ref * 100 if ref else 0.0
            return f"{abs(rel):.1f}% {'above' if rel > 0 else 'below'}"
        return f"{abs(diff) * 100:.1f} points {'above' if diff >= 0 else 'below'}"


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(pred == y))


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    return math.sqrt(float(np.mean((pred.astype(np.float64) - y.astype(np.float64)) ** 2)))


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` known by its name (``--objectives``, the leaderboard, the report)."""
    if metric.direction not in ("maximize", "minimize"):
        raise ValueError(f"metric {metric.name!r}: direction must be maximize or minimize, got {metric.direction!r}")
    _METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Forget the metric called ``name`` (a test's toy metric, after the test)."""
    _METRICS.pop(name, None)


def list_metrics() -> list[str]:
    """Names of every known metric, in registration order (accuracy first)."""
    return list(_METRICS)


def gap_text(name: str, diff: float, ref: float) -> str:
    """``diff`` in words as the metric called ``name`` states it (points for an unknown name)."""
    metric = _METRICS.get(name)
    return metric.gap_text(diff, ref) if metric else _POINTS.gap_text(diff, ref)


def get_metric(name: str) -> Metric:
    """The metric called ``name``; a ConfigError lists the known ones otherwise."""
    try:
        return _METRICS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown metric {name!r} (known: {', '.join(_METRICS)})") from None


ACCURACY = register_metric(Metric("accuracy", "maximize", labels=True, score_fn=_accuracy))
RMSE = register_metric(Metric("rmse", "minimize", labels=False, score_fn=_rmse, gap="percent"))
_POINTS = Metric("points", "maximize", labels=False, score_fn=_accuracy)  # not registered: gap_text's default
