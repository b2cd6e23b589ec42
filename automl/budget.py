"""Did the search's time budget allow a search at all? Seconds per epoch x epochs against --timeout.

A ``--timeout`` that fits one trial turns a hyperparameter search into one configuration. The
watcher estimates a trial's length from the first epoch (so the user hears it early) and, at the
end, from the trials that ran; both say what ``--timeout`` would give the requested trials.
"""

from __future__ import annotations

import math
import time
from typing import Any

HANDFUL = 5  # fewer trials than this (or than requested, if fewer) is not much of a search


def _s(seconds: float) -> str:
    if seconds < 1:  # three significant digits: "0.0333 s", so per-epoch x epochs matches the per-trial figure
        return f"{seconds:.3g} s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def needed_timeout(per_trial_s: float, trials: int) -> int:
    """Seconds of --timeout that let ``trials`` trials of ``per_trial_s`` seconds each run (10% slack)."""
    return int(math.ceil(per_trial_s * trials * 1.1 / 10.0) * 10)


class BudgetWatch:
    """Times the first epoch and every trial of one search run; says when the budget is too small."""

    def __init__(self, trials: int | None, epochs: int, timeout: float | None, started: float | None = None) -> None:
        """``started``: when the --timeout clock began (``time.monotonic()``); the first-epoch
        estimate then weighs trials against the time left, not the whole --timeout (start-up,
        imports and data loading can take a good part of a short budget)."""
        self.trials = trials
        self.epochs = epochs
        self.timeout = timeout
        self.deadline = None if timeout is None or started is None else started + timeout
        self._left: float | None = None  # seconds to the deadline when the first trial started
        self.started = 0
        self.ended = 0
        self.first_epoch_s: float | None = None
        self.trial_seconds: list[float] = []
        self.trial_epochs: list[int] = []
        self._t0: float | None = None
        self._warned = False

    @property
    def wanted(self) -> int:
        """How many trials count as enough: a handful, or all requested if fewer."""
        return min(HANDFUL, self.trials) if self.trials else HANDFUL

    def trial_started(self) -> None:
        self.started += 1
        self._t0 = time.perf_counter()
        if self.deadline is not None and self._left is None:
            self._left = max(0.0, self.deadline - time.monotonic())

    def epoch_done(self, epoch: int) -> str | None:
        """Record the first epoch's time; a warning line when it already shows the budget is too small."""
        if epoch != 1 or self.first_epoch_s is not None or self._t0 is None:
            return None
        self.first_epoch_s = time.perf_counter() - self._t0
        if self.timeout is None or self._warned:
            return None
        per_trial = self.first_epoch_s * self.epochs
        left = self.timeout if self._left is None else self._left
        fits = max(1, math.ceil(left / per_trial)) if per_trial > 0 else self.wanted
        if fits >= self.wanted:
            return None
        self._warned = True
        goal = self.trials or HANDFUL
        spent = self.timeout - left
        before = f" ({_s(spent)} of it went to start-up before the first trial)" if spent >= 1 else ""
        return (f"the first epoch took {_s(self.first_epoch_s)}, so a trial of {self.epochs} epochs takes about "
                f"{_s(per_trial)}: --timeout {self.timeout:g}{before} allows about {fits} trial(s); about "
                f"--timeout {needed_timeout(per_trial, goal) + math.ceil(spent)} would allow {goal}")

    def advice(self) -> str:
        """What --timeout a search would need, for an error that ends a run in which no trial
        completed (empty without a --timeout)."""
        if self.timeout is None:
            return ""
        if self.first_epoch_s is None:
            return (f"--timeout {self.timeout:g} ended the first trial before its first epoch was done; "
                    f"give the search minutes, not seconds")
        per_trial = self.first_epoch_s * self.epochs
        goal = self.trials or HANDFUL
        return (f"one epoch took {_s(self.first_epoch_s)}, so a trial of {self.epochs} epochs needs about "
                f"{_s(per_trial)}: --timeout {needed_timeout(per_trial, goal)} would allow {goal} trials")

    def trial_ended(self, trial: Any) -> None:
        self.ended += 1
        attrs = getattr(trial, "user_attrs", {}) or {}
        if attrs.get("fit") == "direct":  # fitted in one go (trees): its seconds say nothing per epoch
            return
        seconds, epochs = attrs.get("seconds"), attrs.get("epochs")
        if isinstance(seconds, int | float) and isinstance(epochs, int) and epochs > 0:
            self.trial_seconds.append(float(seconds))
            self.trial_epochs.append(epochs)

    def final_notes(self) -> list[str]:
        """One note when the timeout let fewer than a handful of trials run (and why); else none."""
        if self.timeout is None or self.ended >= self.wanted or not self.trial_seconds:
            return []
        if self.trials is not None and self.ended >= self.trials:
            return []
        per_epoch = sum(self.trial_seconds) / sum(self.trial_epochs)
        per_trial = per_epoch * self.epochs
        goal = self.trials or HANDFUL
        asked = f" of the {self.trials} requested" if self.trials else ""
        return [f"only {self.ended} trial(s){asked} ran: about {_s(per_epoch)} per epoch x {self.epochs} epochs = "
                f"{_s(per_trial)} a trial against --timeout {self.timeout:g}; this was barely a search. "
                f"For {goal} trials use --timeout {needed_timeout(per_trial, goal)} (or fewer --epochs, a smaller "
                f"--space)"]
