"""A fake deadline clock for the study tests: each trained epoch moves it forward by a fixed step, so
a ``--timeout`` stops trials after a known number of epochs however fast or busy the machine is.

It is ``time.monotonic()`` plus an offset that grows by ``per_epoch`` seconds after every epoch of
every fit the objective runs (its ``fit``, wrapped), and it stands in for the ``time`` module of
the two places that watch the deadline: the training loop (``automl.train``) and the trial loop
(``automl.study._loop``). Everything else keeps real time, so the deadline, which the CLI and
``run_search`` take from the real clock, is reached after ``timeout / per_epoch`` epochs as long as
the real seconds spent stay under one step (steps are hundreds of seconds).
"""

from __future__ import annotations

import time
from typing import Any

import pytest


class EpochClock:
    """``monotonic()``: real time plus ``per_epoch`` seconds for every epoch trained so far."""

    def __init__(self, per_epoch: float) -> None:
        self.per_epoch = per_epoch
        self.offset = 0.0
        self.epochs = 0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def perf_counter(self) -> float:
        return time.perf_counter()

    def tick(self) -> None:
        self.epochs += 1
        self.offset += self.per_epoch


def epoch_clock(monkeypatch: pytest.MonkeyPatch, per_epoch: float = 1000.0) -> EpochClock:
    """Install an ``EpochClock`` for the deadline checks of training and of the trial loop."""
    import automl.search.objective
    import automl.study._loop
    import automl.train

    clock = EpochClock(per_epoch)
    real_fit = automl.search.objective.fit

    def fit(*args: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
        def ticking(epoch: int, record: dict[str, float]) -> None:
            clock.tick()  # first: the epoch is over whatever the objective's callback decides
            if on_epoch is not None:
                on_epoch(epoch, record)
        return real_fit(*args, on_epoch=ticking, **kwargs)

    monkeypatch.setattr(automl.search.objective, "fit", fit)
    monkeypatch.setattr(automl.train, "time", clock)
    monkeypatch.setattr(automl.study._loop, "time", clock)
    return clock
