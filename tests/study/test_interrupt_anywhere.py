"""Issue 23, item 5: one SIGTERM/SIGINT stops a trial wherever it is (building its model, exporting
it, training it), not only while it trains; between trials the loop still stops cleanly."""

from __future__ import annotations

import os
import signal

import pytest

from automl.study._loop import InterruptGuard


class Trial:
    """What the interruptible objective uses of an Optuna trial: its user attributes."""

    def __init__(self) -> None:
        self.user_attrs: dict[str, str] = {}

    def set_user_attr(self, key: str, value: str) -> None:
        self.user_attrs[key] = value


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_trial_while_its_model_is_built(sig: int) -> None:
    steps = 0

    def objective(trial: object) -> float:
        nonlocal steps
        os.kill(os.getpid(), sig)  # arrives outside training, e.g. while a huge model is being built
        while steps < 10**8:  # stands for the build: ~10 s if the signal were only noted
            steps += 1
        return 0.0

    before = signal.getsignal(sig)
    trial = Trial()
    with InterruptGuard() as guard:
        with pytest.raises(KeyboardInterrupt):
            guard.interruptible(objective)(trial)
        assert guard.requested
    assert steps < 10**6  # raised at once, not after the "build"
    # the failed trial says why (`automl trials` shows it), as a trial interrupted in training does
    assert "interrupted" in trial.user_attrs["fail_reason"]
    assert signal.getsignal(sig) is before


def test_storage_writes_inside_a_trial_still_wait() -> None:
    """The ``critical`` sections of training keep their meaning inside the interruptible objective."""
    done = []

    def objective(trial: object) -> float:
        with guard.training(), guard.critical():  # the objective's own training block, nested
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("write finished")
        pytest.fail("the interrupt should be raised when the write ends")

    with InterruptGuard() as guard, pytest.raises(KeyboardInterrupt):
        guard.interruptible(objective)(Trial())
    assert done == ["write finished"]
