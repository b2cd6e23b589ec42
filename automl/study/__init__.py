"""Studies: samplers and trial pruners by name, storages, the one trial loop shared by ``search``,
``worker`` and ``search --jobs``, dead-worker reaping, and keeping best.pt current.

Modules, each importing only those listed before it (tests/test_imports.py): ``_family_race``,
``_samplers``, ``_budget_sampler``, ``_trial_pruners``, ``_deadline``, ``storage``, ``_settings``,
``_reaper``, ``_run``, ``_best``, ``_ensemble``, ``_front``, ``_loop``, ``_worker``, ``_jobs``,
``_search``, ``_command``, ``trials``, ``dashboard``. Importing this package loads neither Optuna nor PyTorch.
"""

from __future__ import annotations

from automl.study._command import drop_new_empty_studies, search_command
from automl.study._deadline import DEFAULT_TRIALS, resolve_trials
from automl.study._loop import InterruptGuard
from automl.study._samplers import SAMPLERS, list_samplers
from automl.study._search import SearchResult, check_space_fits_task, check_storage, prepare_search, run_search
from automl.study._settings import SearchSettings, WorkerSettings
from automl.study._trial_pruners import TRIAL_PRUNERS, list_trial_pruners
from automl.study._worker import WorkerResult, check_worker, run_worker
from automl.study.storage import (
    counts,
    first_line,
    open_storage,
    redact,
    resolve_storage,
    silence_optuna,
    storage_for,
    study_names,
)

__all__ = [
    "DEFAULT_TRIALS",
    "SAMPLERS",
    "TRIAL_PRUNERS",
    "InterruptGuard",
    "SearchResult",
    "SearchSettings",
    "WorkerResult",
    "WorkerSettings",
    "check_space_fits_task",
    "check_storage",
    "check_worker",
    "counts",
    "drop_new_empty_studies",
    "first_line",
    "list_samplers",
    "list_trial_pruners",
    "open_storage",
    "prepare_search",
    "redact",
    "resolve_storage",
    "resolve_trials",
    "run_search",
    "run_worker",
    "search_command",
    "silence_optuna",
    "storage_for",
    "study_names",
]
