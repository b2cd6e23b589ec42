"""K-fold cross-validation of a trial (``--cv K``) on small data.

On a small table the validation split is small too (150 rows of a 1,000-row set), so the best of
many trials is judged on few rows and its validation score is optimistic. With ``--cv K`` each trial
trains K times, each time on K-1 folds of the training + validation rows, and its value is the mean
score over the held-out folds (the trial pruner sees the running mean after each fold). The test split
is never touched. The trial that becomes the study's best is then refitted on all training +
validation rows, and that model is the one kept.

Default ("auto"): ``CV_AUTO_FOLDS`` folds for the tasks where cross-validation applies
(``Task.cross_validation``: tabular and text) when the training + validation part has fewer than
``CV_AUTO_ROWS`` rows; otherwise a plain split. The environment
variable ``AUTOML_CV`` changes that default (``0``: off, ``K``: K folds, ``auto``), e.g. for a CI job.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from automl.exceptions import ConfigError

CV_AUTO_ROWS = 1000
CV_AUTO_FOLDS = 5
MAX_FOLDS = 20


def _applies(task: str) -> bool:
    """Whether cross-validation applies to the task called ``task`` (``Task.cross_validation``)."""
    from automl.tasks import get_task

    return get_task(task).cross_validation


def _check_folds(cv: int) -> None:
    if cv < 2 or cv > MAX_FOLDS:
        raise ConfigError(f"--cv must be 0 (off) or 2 to {MAX_FOLDS} folds, got {cv}")


def check_cv(cv: int | None, task: str) -> None:
    """``--cv``: None (auto), 0 (off) or 2..MAX_FOLDS, for the tasks where it applies only."""
    if cv is None or cv == 0:
        return
    _check_folds(cv)
    if not _applies(task):
        from automl.tasks import get_task, list_tasks

        names = " and ".join(n for n in list_tasks() if get_task(n).cross_validation)
        raise ConfigError(f"--cv is for the {names} tasks, not {task}")


def default_cv() -> int | None:
    """``AUTOML_CV`` from the environment: None (auto) when unset or ``auto``; ConfigError when malformed."""
    raw = os.environ.get("AUTOML_CV", "auto").strip().lower()
    if raw in ("", "auto"):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"AUTOML_CV must be 'auto', 0 or a number of folds, got {raw[:20]!r}") from None


def resolve_folds(cv: int | None, task: str, n_rows: int) -> int:
    """The number of folds a search uses (0: a plain train/validation split)."""
    if cv is None:
        cv = default_cv()
        if cv is not None:
            if cv != 0:
                _check_folds(cv)
            return cv if _applies(task) else 0
    if cv is not None:
        return int(cv)
    return CV_AUTO_FOLDS if _applies(task) and n_rows < CV_AUTO_ROWS else 0


def fold_indices(y: np.ndarray, k: int, seed: int, stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, held-out) index pairs over ``len(y)`` rows, seeded; stratified by class when
    ``stratify`` and every class can be (a class rarer than K falls back to plain folds)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(y) < k:
        raise ConfigError(f"--cv {k}: only {len(y)} training and validation rows")
    if stratify and np.bincount(y.astype(np.int64)).max(initial=0) >= k:
        with warnings.catch_warnings():  # a class with fewer than k rows: sklearn warns, the folds are fine
            warnings.simplefilter("ignore", UserWarning)
            splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
            return [(a.astype(np.int64), b.astype(np.int64)) for a, b in splits]
    splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)))
    return [(a.astype(np.int64), b.astype(np.int64)) for a, b in splits]
