"""Did the search's time budget allow a search at all? Seconds per epoch x epochs against --timeout.

A ``--timeout`` that fits one trial turns a hyperparameter search into one configuration. The
watcher estimates a trial's length early, from the first *representative* epochs, and at the end
from the trials that ran; both say what ``--timeout`` would give the requested trials.

The very first epoch of a process is not representative: it carries one-off costs (imports,
kernel selection, allocator and cache warm-up), measured at 2-5x a later epoch on small data and
86.5 s against 16-58 s on a 10,000-sentence text set (issue 24 item 4). So it is timed but left out
of every estimate; the estimate is the median of the epochs after it, and the note gives the
spread of those epochs as a range of trials, so the user sees how sure it is.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automl.search.objective import SearchObserver

HANDFUL = 5  # fewer trials than this (or than requested, if fewer) is not much of a search
LOOK_EPOCHS = 3  # epochs after the first that the early estimate waits for (fewer when a trial has fewer)
LOOK_SECONDS = 1.0  # ... and at least this much of them (milliseconds-long epochs are noise one by one)
STARTUP_MAX_S = 30.0  # a process older than this when a command begins did not start for that command


def process_started() -> float:
    """When this process started, as a ``time.monotonic()`` value: ``--timeout`` counts from the
    command's start, the interpreter's start-up and imports included (1-5 s on a loaded 2-core
    machine), so a search ends when a stopwatch around the command says. Linux reads the start from
    /proc (clock ticks since boot, against CLOCK_BOOTTIME); elsewhere, when that fails, or when the
    process is older than ``STARTUP_MAX_S``: now."""
    import os

    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the command name may hold spaces
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    # An older process (a test session, a notebook) runs this command in-process: its start is not the command's.
    return now - age if 0.0 <= age <= STARTUP_MAX_S else now


def _s(seconds: float) -> str:
    if seconds < 1:  # three significant digits: "0.0333 s", so per-epoch x epochs matches the per-trial figure
        return f"{seconds:.3g} s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def needed_timeout(per_trial_s: float, trials: int) -> int:
    """Seconds of --timeout that let ``trials`` trials of ``per_trial_s`` seconds each run (10% slack)."""
    return int(math.ceil(per_trial_s * trials * 1.1 / 10.0) * 10)


def spread(seconds: list[float]) -> tuple[float, float, float]:
    """(median, low, high) of epoch times: low/high are the quartiles from 4 epochs on, else min/max."""
    mid = statistics.median(seconds)
    if len(seconds) >= 4:
        q = statistics.quantiles(seconds, n=4)
        return mid, q[0], q[2]
    return mid, min(seconds), max(seconds)


def epoch_seconds_of(history: list[dict[str, float]]) -> list[float]:
    """Per-epoch seconds from a trial's recorded history (each record's ``seconds`` is cumulative
    from the start of its fit; a new fold starts again from zero)."""
    out: list[float] = []
    before = 0.0
    for record in history:
        now = record.get("seconds")
        if not isinstance(now, int | float):
            return []
        if now < before:  # the next fold's fit
            before = 0.0
        out.append(float(now) - before)
        before = float(now)
    return out


class BudgetWatch:
    """Times every epoch and trial of one search run; says when the budget is too small."""

    def __init__(self, trials: int | None, epochs: int, timeout: float | None, started: float | None = None) -> None:
        """``started``: when the --timeout clock began (``time.monotonic()``); the estimates then
        weigh trials against the time left, not the whole --timeout (start-up, imports and data
        loading can take a good part of a short budget). ``trials`` None: until the deadline."""
        self.trials = trials
        self.epochs = epochs  # --epochs: the most a trial (or, with --cv, each fold) trains
        self.folds = 1  # --cv: a trial trains once per fold (set_folds)
        self.timeout = timeout
        self.deadline = None if timeout is None or started is None else started + timeout
        self._first_start: float | None = None  # when the first trial started
        self.started = 0
        self.ended = 0
        self.first_epoch_s: float | None = None  # this process's first epoch: one-off costs, not an estimate
        self.epoch_seconds: list[float] = []  # every later epoch seen live
        self.trial_seconds: list[float] = []
        self.trial_epochs: list[int] = []
        self._trial_epoch_times: list[float] = []  # per-epoch seconds from ended trials' histories
        self._last: float | None = None  # when the previous epoch (or the current trial) began
        self._in_trial = 0  # epochs done in the current trial
        self._warned = False
        self._decided = False  # the early estimate was made (it is made once)

    @property
    def per_trial_epochs(self) -> int:
        """Epochs a whole trial trains: ``epochs``, once per cross-validation fold."""
        return self.epochs * max(1, self.folds)

    @property
    def wanted(self) -> int:
        """How many trials count as enough: a handful, or all requested if fewer."""
        return min(HANDFUL, self.trials) if self.trials else HANDFUL

    def trial_started(self) -> None:
        self.started += 1
        self._last = time.monotonic()
        self._in_trial = 0
        if self._first_start is None:
            self._first_start = self._last

    def _left(self, now: float) -> float:
        """Seconds to the deadline (without a known start: --timeout less the time since the first trial)."""
        if self.deadline is not None:
            return self.deadline - now
        assert self.timeout is not None
        return self.timeout - (now - (self._first_start if self._first_start is not None else now))

    def _fits(self, per_epoch: float, left: float) -> int:
        """Trials that run all their epochs by the deadline: those already ended, the current one if
        its remaining epochs fit, and as many whole trials after it as the rest allows."""
        rest = left - max(0, self.per_trial_epochs - self._in_trial) * per_epoch
        if rest < 0:
            return self.started - 1
        if per_epoch <= 0:
            return self.started + self.wanted
        return self.started + int(rest // (per_epoch * self.per_trial_epochs))

    def epoch_done(self, epoch: int) -> str | None:
        """Time this epoch; a warning line (once) when the first representative epochs already show
        that the budget allows fewer than a handful of trials."""
        if self._last is None:
            return None
        now = time.monotonic()
        took, self._last = now - self._last, now
        self._in_trial += 1
        if self.first_epoch_s is None:
            self.first_epoch_s = took  # one-off costs: timed, never extrapolated
            return None
        self.epoch_seconds.append(took)
        # one decision, on the median of a few epochs that add up to a measurable time: a single epoch can
        # be a load spike (measured: 0.40 s against 0.095 s for its neighbours on a loaded 2-core machine)
        enough = len(self.epoch_seconds) >= min(LOOK_EPOCHS, max(1, self.per_trial_epochs - 1)) \
            and sum(self.epoch_seconds) >= LOOK_SECONDS
        if self.timeout is None or self._decided or not enough:
            return None
        self._decided = True
        per_epoch, low, high = spread(self.epoch_seconds)
        left = self._left(now)
        fits = self._fits(per_epoch, left)
        if fits >= self.wanted:
            return None
        self._warned = True
        return self._early_note(per_epoch, self._fits(high, left), self._fits(low, left), fits, now)

    def _early_note(self, per_epoch: float, fits_low: int, fits_high: int, fits: int, now: float) -> str:
        per_trial = per_epoch * self.per_trial_epochs
        goal = self.trials or HANDFUL
        n = len(self.epoch_seconds)
        spent = 0.0 if self.deadline is None or self._first_start is None else max(
            0.0, self._first_start - (self.deadline - (self.timeout or 0.0)))
        before = f" ({_s(spent)} of it went to start-up before the first trial)" if spent >= 1 else ""
        first = (f"; the first, {_s(self.first_epoch_s)}, is left out: it carries one-off start-up costs"
                 if self.first_epoch_s is not None else "")
        span = f"{fits_low}-{fits_high} by the fastest and the slowest of them; " if fits_low != fits_high else ""
        until = " before the deadline" if self.trials is None else ""
        kept = "; the trial running at the deadline is kept at its last completed epoch" if fits == 0 else ""
        return (f"epochs take about {_s(per_epoch)} (median of {n} epoch(s) after the first{first}), so a trial "
                f"of {self.per_trial_epochs} epochs takes about {_s(per_trial)}: --timeout {self.timeout:g}{before} "
                f"allows "
                f"about {fits} full trial(s){until} ({span}a rough estimate from {n} epoch(s); trials the trial "
                f"pruner stops early take less){kept}; about --timeout "
                f"{needed_timeout(per_trial, goal) + math.ceil(spent)} would allow {goal}")

    def _per_epoch(self) -> tuple[float, str] | None:
        """(representative seconds per epoch, what it rests on): the median of the ended trials'
        epochs, or of those seen live, without this process's first epoch; the mean of the trials'
        seconds when they carry no per-epoch history; None when nothing but the first epoch was timed."""
        times = self._trial_epoch_times[1:] if len(self._trial_epoch_times) > 1 else []
        times = times or self.epoch_seconds
        if times:
            return statistics.median(times), (f"the median of {len(times)} epoch(s), the first epoch's one-off "
                                              f"start-up costs left out")
        if self.trial_seconds:  # trials without a per-epoch history (older records)
            return sum(self.trial_seconds) / sum(self.trial_epochs), f"the mean of {sum(self.trial_epochs)} epoch(s)"
        return None

    def advice(self) -> str:
        """What --timeout a search would need, for an error that ends a run in which no trial
        completed (empty without a --timeout)."""
        if self.timeout is None:
            return ""
        known = self._per_epoch()
        if known is None and self.first_epoch_s is None:
            return (f"--timeout {self.timeout:g} ended the first trial before its first epoch was done; "
                    f"give the search minutes, not seconds")
        per_epoch = known[0] if known is not None else float(self.first_epoch_s or 0.0)
        how = "an epoch takes about" if known is not None else "the first epoch (with one-off start-up costs) took"
        per_trial = per_epoch * self.per_trial_epochs
        goal = self.trials or HANDFUL
        return (f"{how} {_s(per_epoch)}, so a trial of {self.per_trial_epochs} epochs needs about "
                f"{_s(per_trial)}: --timeout {needed_timeout(per_trial, goal)} would allow {goal} trials")

    def trial_ended(self, trial: FrozenTrial) -> None:
        self.ended += 1
        attrs = getattr(trial, "user_attrs", {}) or {}
        if attrs.get("fit") == "direct":  # fitted in one go (trees): its seconds say nothing per epoch
            return
        seconds, epochs = attrs.get("seconds"), attrs.get("epochs")
        if isinstance(seconds, int | float) and isinstance(epochs, int) and epochs > 0:
            self.trial_seconds.append(float(seconds))
            self.trial_epochs.append(epochs)
            self._trial_epoch_times.extend(epoch_seconds_of(list(attrs.get("history") or [])))

    def final_notes(self) -> list[str]:
        """One note when the timeout let fewer than a handful of trials run (and why); else none."""
        if self.timeout is None or self.ended >= self.wanted or not self.trial_seconds:
            return []
        if self.trials is not None and self.ended >= self.trials:
            return []
        known = self._per_epoch()
        if known is None:
            return []
        per_epoch, basis = known
        per_trial = per_epoch * self.per_trial_epochs
        goal = self.trials or HANDFUL
        ran = f"of the {self.trials} requested ran" if self.trials else "ran before the deadline"
        return [f"only {self.ended} trial(s) {ran}: about {_s(per_epoch)} per epoch x {self.per_trial_epochs} epochs = "
                f"{_s(per_trial)} a trial against --timeout {self.timeout:g} ({basis}); this was barely a search. "
                f"For {goal} trials use --timeout {needed_timeout(per_trial, goal)} (or fewer --epochs, a smaller "
                f"--space)"]


class BudgetObserver:
    """The search's observer as the library hands it to the trial loop: each event is timed by a
    ``BudgetWatch`` first, then passed on to ``inner`` (the command line's display, or nothing). The
    watch's early warning goes to ``inner.on_note``; its ``advice`` and ``final_notes`` are read by
    ``automl.study.search``. ``inner`` only reports: it never sees or changes the budget."""

    def __init__(self, inner: SearchObserver | None, watch: BudgetWatch) -> None:
        self.inner = inner
        self.watch = watch

    def set_direction(self, direction: str, metric: str) -> None:
        if hasattr(self.inner, "set_direction"):
            self.inner.set_direction(direction, metric)

    def set_folds(self, folds: int) -> None:
        """--cv: a trial trains once per fold (the watch's time estimates count every fold)."""
        self.watch.folds = max(1, folds)

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        self.watch.trial_started()
        if self.inner is not None:
            self.inner.on_trial_start(number, params)

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        warning = self.watch.epoch_done(epoch)
        if self.inner is not None:
            self.inner.on_epoch(number, epoch, epochs, record)
        if warning:
            self.on_note(warning)

    def on_note(self, message: str) -> None:
        if self.inner is not None and hasattr(self.inner, "on_note"):
            self.inner.on_note(message)

    def on_trial_end(self, trial: optuna.trial.FrozenTrial) -> None:
        self.watch.trial_ended(trial)
        if self.inner is not None:
            self.inner.on_trial_end(trial)
