"""The trial loop's parts that need no study: Ctrl-C handling and splitting trials over --jobs."""

from __future__ import annotations

import os
import signal
import time

import pytest

from automl.study._jobs import split_trials
from automl.study._loop import InterruptGuard


def test_split_trials():
    assert split_trials(7, 3) == [3, 2, 2]
    assert sum(split_trials(20, 6)) == 20
    assert split_trials(None, 2) == [None, None]


def test_interrupt_guard_defers_outside_training():
    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)  # between trials: only a flag
        assert guard.requested
        with pytest.raises(KeyboardInterrupt), guard.training():  # a trial must not start training
            pass
    with InterruptGuard() as guard, pytest.raises(KeyboardInterrupt), guard.training():
        with guard.critical():
            os.kill(os.getpid(), signal.SIGINT)  # inside a storage write: deferred ...
            time.sleep(0.05)
            reached = True
        pytest.fail("the interrupt should be raised when the storage write ends")
    assert reached
    assert signal.getsignal(signal.SIGINT) is before  # restored
