"""Dead workers: their running trials are failed with a reason and retried once.

Three ways a worker is found dead, all ending in the same retry callback (Optuna's
``RetryHeartbeatStaleTrialCallback``, which re-queues the trial with the same parameters):

- its heartbeats stopped (database storages, any machine): Optuna's public
  ``optuna.storages.fail_stale_trials`` fails the trial; as a failed trial can no longer be
  annotated, each trial records at its start the reason it will then show (``stale_reason``);
- its process is gone (same machine; the only way for a journal file, which has no heartbeats);
- it was a ``--jobs`` child that exited with an error or a signal.

Every trial records the worker that runs it (user attribute ``worker``, ``host:pid``).
"""

from __future__ import annotations

import copy
import os
import socket
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial
    #: called with a dead worker's trial to queue its retry (``retry_callback``)
    RetryCallback = Callable[[optuna.Study, FrozenTrial], None]

MAX_RETRY = 1  # a trial whose worker died is run once more, not forever
# Attributes of the dead trial that describe that run, not the trial: its retry starts without them.
_RUN_ATTRS = ("fail_reason", "stale_reason", "worker", "history", "epochs", "seconds", "prune_reason",
              "pruned_at_epoch")


def worker_id(pid: int | None = None) -> str:
    """``host:pid`` — stored on every trial as user attribute ``worker``."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def stale_reason(worker: str, grace_s: int) -> str:
    """Why a trial of ``worker`` failed when its heartbeats stopped for ``grace_s`` seconds."""
    return f"worker {worker} stopped sending heartbeats for more than {grace_s} s (process died?)"


def trial_attrs(grace_s: int | None) -> dict[str, str]:
    """What each trial of this process records first: the worker, and with heartbeats (a grace
    period of ``grace_s`` seconds) the reason it will show if they stop."""
    wid = worker_id()
    return {"worker": wid} if grace_s is None else {"worker": wid, "stale_reason": stale_reason(wid, grace_s)}


def is_retry(trial: FrozenTrial) -> bool:
    """A trial re-queued for a dead worker's trial."""
    return "failed_trial" in trial.system_attrs


def retry_callback(max_retry: int = MAX_RETRY) -> RetryCallback:
    """The callback that re-queues a dead worker's trial (without the dead run's attributes, with
    ``retry_of`` set); it remembers in ``.reaped`` the numbers of the trials this process failed."""
    import optuna

    class RetryDeadWorkerTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
        def __init__(self) -> None:
            super().__init__(max_retry=max_retry)
            self.reaped: list[int] = []

        def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
            self.reaped.append(trial.number)
            clean = copy.copy(trial)
            clean.user_attrs = {
                **{k: v for k, v in trial.user_attrs.items() if k not in _RUN_ATTRS},
                "retry_of": int(trial.system_attrs.get("failed_trial", trial.number)),
            }
            super().__call__(study, clean)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryDeadWorkerTrial()


def fail_trial(study: optuna.Study, storage: BaseStorage, number: int, reason: str, retry: RetryCallback) -> bool:
    """Fail the RUNNING trial ``number`` with ``fail_reason`` and queue its retry; False when it
    already ended (its worker or another reaper got there first)."""
    import optuna
    from optuna.trial import TrialState

    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                               number)
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry(study, storage.get_trial(trial_id))
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def reap_dead_local(study: optuna.Study, storage: BaseStorage, retry: RetryCallback) -> list[int]:
    """Fail the RUNNING trials of workers on this machine whose process is gone and queue their retries."""
    host = socket.gethostname()
    failed = []
    for t in _running(study):
        wid = str(t.user_attrs.get("worker", ""))
        h, _, pid = wid.rpartition(":")
        dead = h == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
        if dead and fail_trial(study, storage, t.number, f"worker {wid} is no longer running (process died)", retry):
            failed.append(t.number)
    return failed


def reap_worker(study: optuna.Study, storage: BaseStorage, wid: str, how: str, retry: RetryCallback) -> list[int]:
    """Fail the RUNNING trials of one worker known to be dead (a ``--jobs`` child) and queue retries."""
    return [t.number for t in _running(study)
            if t.user_attrs.get("worker") == wid and fail_trial(study, storage, t.number, f"worker {wid} {how}", retry)]


def reap(study: optuna.Study, storage: BaseStorage, retry: RetryCallback) -> None:
    """Before a trial: fail the trials of dead workers, by heartbeat (any machine) and by process
    (this machine), and queue their retries. ``retry.reaped`` lists what this process failed."""
    import optuna

    with warnings.catch_warnings():  # fail_stale_trials is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # calls the storage's retry callback for each
    reap_dead_local(study, storage, retry)


def n_waiting(study: optuna.Study) -> int:
    """Queued trials (retries of dead workers' trials)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
