"""The metrics a task can report and ``--metric`` can choose: what a score means, beyond its name.

A ``Metric`` says which way is better, whether it scores a classification (then splits and
cross-validation folds are stratified by class, distillation applies and the report draws a confusion
matrix), which problems it fits (``binary``, ``multiclass``, ``regression``), whether it needs
probabilities (scores) rather than labels, whether a binary decision threshold changes it, and how a
difference to the classic reference is stated. Every value is computed by ``sklearn.metrics``.

``score(pred, y)`` takes the predictions in whichever form a caller has them: class labels (1-D
integers), an (N, C) probability matrix, or a 1-D positive-class score (float; a binary score such as
an anomaly score); for regression, the values. A new metric is one ``register_metric`` entry below.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

#: the kinds of problem a metric can fit (a task's data is one of them; ``unlabelled``: no targets at all,
#: the anomaly task's data without labels)
PROBLEMS = ("binary", "multiclass", "regression", "unlabelled")
CLASSIFICATION = frozenset({"binary", "multiclass"})


@dataclass(frozen=True)
class Metric:
    """One metric: its name, direction, what it scores and what its predictions must be."""

    name: str
    #: ``maximize`` or ``minimize``
    direction: str
    #: it scores a classification (class targets) rather than values (rmse)
    labels: bool
    #: (predictions, targets) -> the score: labels or values, or probabilities when ``scores``
    score_fn: Callable[[np.ndarray, np.ndarray], float]
    #: how a difference to the reference is stated: ``points`` (x 100) or ``percent`` of the reference
    gap: str = "points"
    #: the problems it fits (empty: all of its kind: classification when ``labels``, else regression)
    problems: frozenset[str] = frozenset()
    #: it needs probabilities or a positive-class score (roc_auc, average_precision, log_loss)
    scores: bool = False
    #: a binary decision threshold changes it (chosen on validation for the best model)
    thresholded: bool = False
    #: the name of scikit-learn's scorer of the same metric (HistGradientBoosting's early stopping)
    sklearn_scorer: str | None = None

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def fits(self) -> frozenset[str]:
        """The problems (``binary``, ``multiclass``, ``regression``) this metric can score."""
        return self.problems or (CLASSIFICATION if self.labels else frozenset({"regression"}))

    def score(self, pred: np.ndarray, y: np.ndarray, threshold: float = 0.5, positive: int = 1) -> float:
        """The metric of predictions ``pred`` against targets ``y`` (0.0 when there are none).

        ``pred``: labels (1-D integers), an (N, C) probability matrix, or a 1-D positive-class score
        (floats); label metrics turn probabilities into labels (binary: ``p1 >= threshold``).
        ``positive``: the class index a binary metric calls positive (f1, average_precision, the
        threshold); 0 swaps the two classes (labels and probability columns) before scoring."""
        import numpy as np

        if not len(y):
            return 0.0
        pred, y = np.asarray(pred), np.asarray(y)
        if positive == 0 and self.labels:  # binary with class 0 positive: swap the classes
            y = 1 - y
            if pred.ndim == 2 and pred.shape[1] == 2:
                pred = pred[:, ::-1]
            elif pred.ndim == 1 and not np.issubdtype(pred.dtype, np.floating):
                pred = 1 - pred
        if self.labels:
            pred = self._as_scores(pred) if self.scores else self._as_labels(pred, threshold)
        with warnings.catch_warnings():  # an undefined precision or a missing class is a 0, said once here
            warnings.simplefilter("ignore")
            return float(self.score_fn(pred, y))

    @staticmethod
    def _as_labels(pred: np.ndarray, threshold: float) -> np.ndarray:
        import numpy as np

        if pred.ndim == 2:
            if pred.shape[1] == 2:
                return (pred[:, 1] >= threshold).astype(np.int64)
            return pred.argmax(axis=1)
        if np.issubdtype(pred.dtype, np.floating):
            return (pred >= threshold).astype(np.int64)
        return pred

    @staticmethod
    def _as_scores(pred: np.ndarray) -> np.ndarray:
        if pred.ndim == 2 and pred.shape[1] == 2:
            return pred[:, 1]
        return pred

    def gap_text(self, diff: float, ref: float) -> str:
        """``diff`` (best minus reference) in words: "2.0 points above", "3.5% below"."""
        if self.gap == "percent":
            rel = diff / ref * 100 if ref else 0.0
            return f"{abs(rel):.1f}% {'above' if rel > 0 else 'below'}"
        return f"{abs(diff) * 100:.1f} points {'above' if diff >= 0 else 'below'}"


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(y, pred)


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return balanced_accuracy_score(y, pred)


def _f1(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return f1_score(y, pred, pos_label=1, average="binary", zero_division=0)


def _f1_macro(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return f1_score(y, pred, average="macro", zero_division=0)


def _roc_auc(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:  # a split holding one class only: no ranking to judge; chance level
        return 0.5
    try:
        if pred.ndim == 2:  # multiclass: one-vs-rest, macro-averaged over the classes
            return roc_auc_score(y, _normalised(pred), multi_class="ovr", average="macro",
                                 labels=list(range(pred.shape[1])))
        return roc_auc_score(y, pred)
    except ValueError:  # a split holding one class only: no ranking to judge; chance level
        return 0.5


def _average_precision(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return average_precision_score(y, pred, pos_label=1)


def _log_loss(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np
    from sklearn.metrics import log_loss

    if pred.ndim == 1:  # a positive-class probability
        pred = np.stack([1.0 - pred, pred], axis=1)
    return log_loss(y, _normalised(pred), labels=list(range(pred.shape[1])))


def _normalised(proba: np.ndarray) -> np.ndarray:
    """Rows that sum to one in float64 (float32 softmax rows miss 1 by 1e-7, which sklearn rejects)."""
    import numpy as np

    p = np.clip(proba.astype(np.float64), 0.0, None)
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mean_squared_error

    return math.sqrt(mean_squared_error(y.astype("float64"), pred.reshape(-1).astype("float64")))


def _mae(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mean_absolute_error

    return mean_absolute_error(y.astype("float64"), pred.reshape(-1).astype("float64"))


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    if len(y) < 2:  # undefined for one sample
        return 0.0
    return r2_score(y.astype("float64"), pred.reshape(-1).astype("float64"))


def _mape(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mean_absolute_percentage_error

    return mean_absolute_percentage_error(y.astype("float64"), pred.reshape(-1).astype("float64"))


def _mean_score(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(np.asarray(pred, dtype=np.float64)))


def outputs_metric(spec: Metric, threshold: float = 0.5,
                   positive: int = 1) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """(model outputs, targets) -> ``spec``'s score: class logits become softmax probabilities
    (then labels at ``threshold`` for a binary label metric, class ``positive`` the positive one),
    regression outputs their values."""
    import torch

    def score(outputs: torch.Tensor, y: torch.Tensor) -> float:
        if not len(y):
            return 0.0
        out = outputs.detach().float()
        if not bool(torch.isfinite(out).all()):  # a diverged model: NaN, as its loss (the caller stops it)
            return float("nan")
        if spec.labels:
            out = out.softmax(dim=-1)
        return spec.score(out.cpu().numpy(), y.detach().cpu().numpy(), threshold, positive)

    score.__name__ = spec.name
    return score


def proba_columns(proba: np.ndarray, classes: Any, n_classes: int) -> np.ndarray:
    """A scikit-learn ``predict_proba`` matrix (columns: the fitted ``classes``) as (N, ``n_classes``)
    columns in class-index order (a class the fit never saw gets probability 0)."""
    import numpy as np

    out = np.zeros((proba.shape[0], n_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def constant_score(metric: Metric, y_train: np.ndarray, y_val: np.ndarray, num_classes: int,
                   positive: int = 1) -> float | None:
    """``metric`` of a constant prediction on ``y_val``: ``y_train``'s class priors for every row when
    the metric scores labels (the majority-class accuracy, an AUC of 0.5), else its mean. None without
    targets, with labels outside ``num_classes``, or when the metric is undefined on a constant."""
    import numpy as np

    if not len(y_train) or not len(y_val):
        return None
    try:
        if metric.labels:
            n_classes = max(num_classes, 2)
            labels = y_train.astype(np.int64).reshape(-1)
            if labels.min() < 0 or labels.max() >= n_classes:
                return None
            priors = np.bincount(labels, minlength=n_classes) / len(labels)
            pred = np.broadcast_to(priors, (len(y_val), n_classes))
        else:
            pred = np.full(y_val.shape, float(y_train.astype(np.float64).mean()))
        return float(metric.score(pred, y_val, positive=positive))
    except (ValueError, TypeError, IndexError):
        return None


def problem_of(meta: dict[str, Any]) -> str:
    """``binary``, ``multiclass`` or ``regression``: the kind of problem of a bundle's ``meta``."""
    if meta.get("problem") == "regression":
        return "regression"
    return "binary" if int(meta.get("num_classes") or 0) == 2 else "multiclass"


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` known by its name (``--metric``, ``--objectives``, the leaderboard, the report)."""
    if metric.direction not in ("maximize", "minimize"):
        raise ValueError(f"metric {metric.name!r}: direction must be maximize or minimize, got {metric.direction!r}")
    bad = set(metric.problems) - set(PROBLEMS)
    if bad:
        raise ValueError(f"metric {metric.name!r}: unknown problem(s) {sorted(bad)} (known: {', '.join(PROBLEMS)})")
    _METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Forget the metric called ``name`` (a test's toy metric, after the test)."""
    _METRICS.pop(name, None)


def list_metrics(problem: str | None = None) -> list[str]:
    """Names of every known metric (those that fit ``problem`` when given), in registration order."""
    return [n for n, m in _METRICS.items() if problem is None or problem in m.fits]


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


#: at most this many candidate thresholds are scored (midpoints of the sorted validation scores)
MAX_THRESHOLDS = 256


def best_threshold(metric: Metric, p1: np.ndarray, y: np.ndarray) -> float:
    """The decision threshold on the positive-class probabilities ``p1`` that maximises (or minimises)
    ``metric`` on targets ``y`` (1: positive): a row is positive when ``p1 >= threshold``. Candidates are 0.5 and
    the midpoints between consecutive distinct scores (at most ``MAX_THRESHOLDS``, evenly spread);
    of equal scores, the one nearest 0.5 wins."""
    import numpy as np

    values = np.unique(np.asarray(p1, dtype=np.float64))
    mids = (values[:-1] + values[1:]) / 2.0
    if len(mids) > MAX_THRESHOLDS:
        mids = mids[np.linspace(0, len(mids) - 1, MAX_THRESHOLDS).round().astype(np.int64)]
    best_t, best_s = 0.5, metric.score(p1, y, 0.5)
    sign = 1.0 if metric.maximize else -1.0
    for t in mids.tolist():
        s = metric.score(p1, y, t)
        if sign * (s - best_s) > 1e-12 or (abs(s - best_s) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best_t, best_s = float(t), s
    return best_t


def check_metric_fits(name: str, problems: Any, what: str) -> None:
    """ConfigError (one line, listing the valid names) unless the metric ``name`` is known and fits
    one of ``problems`` (``what`` says whose they are: "the image task", "a regression target")."""
    problems = set(problems)
    valid = [n for n, m in _METRICS.items() if m.fits & problems]
    metric = _METRICS.get(name)
    if metric is None:
        raise ConfigError(f"unknown metric {name!r}; for {what} choose from: {', '.join(valid)}")
    if not metric.fits & problems:
        fits = " or ".join(p for p in PROBLEMS if p in metric.fits)
        raise ConfigError(f"--metric {name} is for {fits} problems, not {what}; choose from: {', '.join(valid)}")


B, M = frozenset({"binary"}), CLASSIFICATION
ACCURACY = register_metric(Metric("accuracy", "maximize", labels=True, score_fn=_accuracy, thresholded=True,
                                  sklearn_scorer="accuracy"))
register_metric(Metric("balanced_accuracy", "maximize", labels=True, score_fn=_balanced_accuracy, thresholded=True,
                       sklearn_scorer="balanced_accuracy"))
register_metric(Metric("f1", "maximize", labels=True, score_fn=_f1, problems=B, thresholded=True, sklearn_scorer="f1"))
register_metric(Metric("f1_macro", "maximize", labels=True, score_fn=_f1_macro, sklearn_scorer="f1_macro"))
register_metric(Metric("roc_auc", "maximize", labels=True, score_fn=_roc_auc, scores=True,
                       sklearn_scorer="roc_auc_ovr"))
register_metric(Metric("average_precision", "maximize", labels=True, score_fn=_average_precision, problems=B,
                       scores=True, sklearn_scorer="average_precision"))
register_metric(Metric("log_loss", "minimize", labels=True, score_fn=_log_loss, scores=True, gap="percent",
                       sklearn_scorer="neg_log_loss"))
RMSE = register_metric(Metric("rmse", "minimize", labels=False, score_fn=_rmse, gap="percent",
                              sklearn_scorer="neg_root_mean_squared_error"))
register_metric(Metric("mae", "minimize", labels=False, score_fn=_mae, gap="percent",
                       sklearn_scorer="neg_mean_absolute_error"))
register_metric(Metric("r2", "maximize", labels=False, score_fn=_r2, sklearn_scorer="r2"))
register_metric(Metric("mape", "minimize", labels=False, score_fn=_mape, gap="percent",
                       sklearn_scorer="neg_mean_absolute_percentage_error"))
# unlabelled data (the anomaly task): the mean held-out anomaly score (reconstruction error), lower is better
register_metric(Metric("recon_error", "minimize", labels=False, score_fn=_mean_score, gap="percent",
                       problems=frozenset({"unlabelled"})))
_POINTS = Metric("points", "maximize", labels=False, score_fn=_accuracy)  # not registered: gap_text's default
