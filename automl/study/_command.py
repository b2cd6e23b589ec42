"""``automl search`` as one library call: check, open the storage, search inside the display, clean up.

The command line builds a ``SearchSettings`` and an observer (its display) and calls
``search_command`` once; everything between (the checks that run before PyTorch is imported, the
storage check that runs before any display, the time-budget watch, and deleting the empty study a
failed search would leave behind) is here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from automl.exceptions import SearchInterrupted, StorageError, TrainingError
from automl.search.budget import BudgetObserver, BudgetWatch
from automl.study._search import check_storage, run_search
from automl.study._settings import SearchSettings
from automl.study.storage import first_line, open_storage, redact, study_names

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from automl.search.objective import SearchObserver
    from automl.study._search import SearchResult


def search_command(settings: SearchSettings, observer: AbstractContextManager[SearchObserver] | None = None,
                   start: float | None = None) -> SearchResult:
    """Run ``automl search``: wrong paths, space files and target columns fail before PyTorch is
    imported, a bad ``--storage`` before ``observer`` is entered (its display starts), and the
    search then runs inside it. ``start`` (a ``time.monotonic()`` value) is when ``--timeout``
    began. A ``BudgetWatch`` times the trials on the way to ``observer``: its early warning is a
    note, its verdict a note of the result or, when no trial completed, part of the TrainingError.
    A search that fails before its first trial deletes the empty study it created (a failure to do
    so is a note on the error that ended the search, which stays the one raised)."""
    from automl.search.precheck import precheck_search

    precheck_search(settings)
    url = check_storage(settings)
    before = _names(url)
    watch = BudgetWatch(trials=settings.trials, epochs=settings.epochs, timeout=settings.timeout, started=start)
    try:
        with observer if observer is not None else contextlib.nullcontext() as shown:
            result = run_search(settings, observer=BudgetObserver(shown, watch), start=start)
    except SearchInterrupted:  # trials ran (and failed): the study is kept to resume
        raise
    except TrainingError as exc:  # no trial completed: say what budget would have done
        _clean_up(url, before, exc)
        advice = watch.advice()
        raise TrainingError(f"{exc}; {advice}" if advice else str(exc)) from None
    except BaseException as exc:
        _clean_up(url, before, exc)
        raise
    result.notes.extend(watch.final_notes())
    return result


def _names(url: str) -> set[str]:
    try:
        return set(study_names(open_storage(url)))
    except Exception as exc:  # optuna and SQLAlchemy raise their own kinds
        raise StorageError(f"cannot list the studies in {redact(url)}: {first_line(exc)}") from None


def drop_new_empty_studies(url: str, before: set[str]) -> list[str]:
    """Delete the studies of ``url`` that are not in ``before`` and hold no trials (a search that
    failed before its first trial: unreadable data, Ctrl-C while loading); returns their names.
    StorageError when the storage cannot be read or a study cannot be deleted."""
    import optuna

    try:
        storage = open_storage(url)
        summaries = optuna.get_all_study_summaries(storage)
    except Exception as exc:
        raise StorageError(f"cannot list the studies in {redact(url)}: {first_line(exc)}") from None
    dropped = []
    for summary in summaries:
        if summary.study_name in before or summary.n_trials:
            continue
        try:
            optuna.delete_study(study_name=summary.study_name, storage=storage)
        except Exception as exc:
            raise StorageError(f"cannot delete the empty study '{summary.study_name}' in {redact(url)}: "
                               f"{first_line(exc)}") from None
        dropped.append(summary.study_name)
    return dropped


def _clean_up(url: str, before: set[str], error: BaseException) -> None:
    """``drop_new_empty_studies`` while ``error`` ends the search: a cleanup that fails is said as a
    note on ``error`` (the command line prints it after the error), never raised in its place."""
    try:
        drop_new_empty_studies(url, before)
    except StorageError as exc:
        error.add_note(f"{exc}; delete it with optuna delete-study")
