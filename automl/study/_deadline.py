"""The --timeout deadline's side of a search: how many trials a search runs (``--timeout`` without
``--trials``: until the deadline) and what the summary says about trials the deadline cut short
(kept at their last completed epoch, ``automl.search.objective_deadline``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automl.study._run import StudyRun

#: trials a search adds when neither --trials nor --timeout is given
DEFAULT_TRIALS = 20


def resolve_trials(trials: int | None, timeout: float | None) -> int | None:
    """The trials to run: ``--trials`` when given; else, with a ``--timeout``, None (until the
    deadline, Optuna's meaning of a timeout without n_trials); else ``DEFAULT_TRIALS``."""
    if trials is not None:
        return trials
    return None if timeout is not None else DEFAULT_TRIALS


def deadline_notes(run: StudyRun, best_trial: int, trials: int | None, timeout: float | None) -> list[str]:
    """What the user should know about the deadline: trials it cut short (kept at their last
    completed epoch), best.pt coming from one of them, and a search that ran until it."""
    from automl.search.objective_deadline import STOP_REASON_ATTR, deadline_stopped_count, is_deadline_stopped

    study, notes = run.study, []
    if trials is None and timeout is not None:
        notes.append(f"no --trials: trials ran until the --timeout {timeout:g} s deadline")
    if not deadline_stopped_count(study):
        return notes
    best = study.get_trials(deepcopy=False)[best_trial]
    if is_deadline_stopped(best):
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        why = "it scored best on validation" if any(not is_deadline_stopped(t) for t in done) else \
            "no trial ran all its epochs"
        stop = best.user_attrs.get(STOP_REASON_ATTR, "stopped by the deadline")
        notes.append(f"best.pt is trial {best.number}, {stop} ({why})")
    else:
        notes.append(f"{deadline_stopped_count(study)} trial(s) were stopped by the --timeout deadline and kept at "
                     f"their last completed epoch (automl trials shows them)")
    return notes
