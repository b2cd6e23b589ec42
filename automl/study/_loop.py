"""The one trial loop: ``automl search``, each ``--jobs`` child and ``automl worker`` run trials here.

Trial accounting: ``n_trials`` counts *fresh* trials; a retry of a dead worker's trial (Optuna's
WAITING queue) is run on top, so every requested trial is run and a trial that died is run once more.
After each completed trial best.pt is brought up to date, so a killed search leaves a usable model.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from automl.study._best import write_best
from automl.study._reaper import is_retry, n_waiting, reap
from automl.study._run import StudyRun

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

    import optuna
    from optuna.trial import FrozenTrial

    from automl.search.objective import SearchObserver

    #: what an objective returns: the metric, or one value per objective
    Objectives = float | Sequence[float]
    #: a signal handler as ``signal.signal`` returns it
    Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class InterruptGuard:
    """SIGINT/SIGTERM handling for a trial loop.

    While a trial runs (building its model, exporting it, training it: the whole objective, see
    ``interruptible``), the first Ctrl-C or SIGTERM raises ``KeyboardInterrupt`` at once: the trial is
    marked failed ("interrupted") and the loop ends. Inside ``critical`` (a storage write during
    training) and between trials (Optuna's own storage writes, writing best.pt) it only sets
    ``requested`` and the loop stops before the next trial, so no write is cut in half. A second
    signal raises at once. Outside the main thread no handler is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self._training = 0  # depth of nested ``training`` blocks
        self._critical = 0
        self._old: dict[int, Handler] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.requested = True
        if self._training and not self._critical:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Wrap the training of one trial: an interrupt here ends the trial at once."""
        if self.requested:
            raise KeyboardInterrupt
        self._training += 1
        try:
            yield
        finally:
            self._training -= 1

    def interruptible(self, objective: Callable[[optuna.Trial], Objectives]) -> Callable[[optuna.Trial], Objectives]:
        """``objective`` run as one ``training`` block: a signal stops a trial wherever it is."""

        def run(trial: optuna.Trial) -> Objectives:
            try:
                with self.training():
                    return objective(trial)
            except KeyboardInterrupt:
                # stopped outside the epoch loop (building, exporting, writing a checkpoint), where
                # the objective records nothing itself: say why before Optuna marks the trial failed
                if "fail_reason" not in trial.user_attrs:
                    with self.critical():
                        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGTERM) outside training")
                raise

        return run

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Wrap a storage write inside training: an interrupt waits until it is done."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self.requested and self._training and not self._critical:
            raise KeyboardInterrupt


@dataclass
class WorkStats:
    """What this process's trial loop did."""

    fresh: int = 0
    retries: int = 0
    interrupted: bool = False
    reaped: list[int] = field(default_factory=list)


def warm_up_torch() -> None:
    """Pay PyTorch's one-off costs before the first trial's clock starts.

    PyTorch's own optimizer calls import ``torch._dynamo`` (5-9 s on a 2-core CPU); automl.train
    builds and steps optimizers without it, so what is left here is a first optimizer step. It
    counts against ``--timeout`` (the deadline runs from the command's start); it is just not a trial's.
    """
    from automl.train import warm_up

    warm_up()


def run_trials(run: StudyRun, *, n_trials: int | None, observer: SearchObserver | None = None,
               drain: bool = False) -> WorkStats:
    """Run trials until ``n_trials`` fresh ones are done (None: until the deadline or Ctrl-C), or,
    with ``drain=True``, only the queued retries.

    Each trial is one ``study.optimize`` call, so Optuna's heartbeat thread applies. Before each (and
    once even when none is run), dead workers' trials are reaped; a trial still training at the
    deadline completes with its last completed epoch (``automl.search.objective_deadline``), or is pruned
    ("deadline") when not one epoch ended.
    """
    from optuna.trial import TrialState

    from automl.exceptions import TrialFailedError
    from automl.search.objective import Objective

    study = run.study
    stats = WorkStats()
    last: dict[str, FrozenTrial] = {}
    over_streak = 0  # consecutive trials over the latency budget (a budget nothing can meet stops the loop)

    def remember(_study: optuna.Study, trial: FrozenTrial) -> None:
        last["trial"] = trial
        if observer is not None:
            observer.on_trial_end(trial)

    if not drain or n_waiting(study):
        warm_up_torch()
    with InterruptGuard() as guard:
        while not guard.requested:
            reap(study, run.storage, run.retry)  # first, so even a worker with nothing to run cleans up
            if drain and not n_waiting(study):
                break
            if not drain and n_trials is not None and stats.fresh >= n_trials:
                break
            stop_at = run.train_deadline()
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            objective = Objective(run, observer=observer, guard=guard, deadline=stop_at)
            try:
                study.optimize(guard.interruptible(objective), n_trials=1, catch=(TrialFailedError,),
                               callbacks=[remember], gc_after_trial=False)
            except KeyboardInterrupt:
                stats.interrupted = True
                break
            trial = last.pop("trial", None)
            if trial is None:
                break
            if is_retry(trial):
                stats.retries += 1
            else:
                stats.fresh += 1
            if trial.state == TrialState.COMPLETE:
                write_best(run, retrain=False, final=False)  # a no-op unless the study's best changed
            if run.latency is not None:
                from automl.runtime.latency import check_streak

                over_streak = check_streak(run, trial, over_streak)
    stats.interrupted = stats.interrupted or guard.requested
    stats.reaped = list(run.retry.reaped)
    return stats
