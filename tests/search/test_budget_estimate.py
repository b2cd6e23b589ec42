"""The budget estimate is honest (issue 24 item 4): the first epoch of a run carries one-off costs
(imports, warm-up) and is never extrapolated; the estimate rests on later epochs, says how sure it
is, and makes sense when trials run until the deadline (no --trials). A fake clock: no real timing."""

from __future__ import annotations

import pytest

from automl.search import budget
from automl.search.budget import BudgetWatch


class Clock:
    """Stands in for the ``time`` module inside automl.search.budget."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(budget, "time", fake)
    return fake


def _epochs(watch: BudgetWatch, clock: Clock, seconds: list[float]) -> list[str | None]:
    notes = []
    for epoch, took in enumerate(seconds, 1):
        clock.now += took
        notes.append(watch.epoch_done(epoch))
    return notes


def test_one_slow_later_epoch_is_not_extrapolated_either(clock: Clock) -> None:
    # a load spike in the second epoch (0.4 s against 0.1 s): the median of three epochs is judged
    watch = BudgetWatch(trials=None, epochs=10, timeout=10, started=clock.now)
    watch.trial_started()
    assert _epochs(watch, clock, [0.05, 0.4, 0.1, 0.1] + [0.1] * 6) == [None] * 10


def test_a_slow_first_epoch_is_not_extrapolated(clock: Clock) -> None:
    # 10 s of one-off costs in the first epoch, then 0.5 s epochs: 10 epochs take 14.5 s, and 90 s
    # hold several trials. The old estimate (first epoch x 10 = 100 s) said "allows about 1 trial".
    watch = BudgetWatch(trials=None, epochs=10, timeout=90, started=clock.now)
    watch.trial_started()
    assert _epochs(watch, clock, [10.0] + [0.5] * 9) == [None] * 10


def test_a_budget_too_small_for_later_epochs_still_says_so_and_how_sure(clock: Clock) -> None:
    watch = BudgetWatch(trials=None, epochs=10, timeout=90, started=clock.now)
    watch.trial_started()
    notes = _epochs(watch, clock, [10.0, 3.0, 3.0, 3.0])
    assert notes[:3] == [None] * 3  # nothing is said from the first epoch, nor before three later ones
    note = notes[3]
    assert note is not None
    # 71 s left after 19 s; the 6 epochs left of this trial take 18 s; 53 s hold one more 30 s trial
    assert "epochs take about 3.0 s (median of 3 epoch(s) after the first; the first, 10.0 s, is left out: it " \
           "carries one-off start-up costs)" in note, note
    assert "a trial of 10 epochs takes about 30.0 s: --timeout 90 allows about 2 full trial(s) before the " \
           "deadline (a rough estimate from 3 epoch(s)" in note, note
    assert note.endswith("about --timeout 170 would allow 5"), note  # 5 x 30 s + 10% slack, rounded up to 10 s
    assert "kept at its last completed epoch" not in note  # two full trials fit
    clock.now += 3.0
    assert watch.epoch_done(5) is None  # once


def test_a_budget_for_no_full_trial_says_the_running_one_is_kept(clock: Clock) -> None:
    watch = BudgetWatch(trials=None, epochs=300, timeout=40, started=clock.now - 6)
    watch.trial_started()
    note = _epochs(watch, clock, [1.4, 2.3, 2.3, 2.3])[3]
    assert note is not None and "allows about 0 full trial(s) before the deadline" in note, note
    assert "(6.0 s of it went to start-up before the first trial)" in note, note
    assert "the trial running at the deadline is kept at its last completed epoch" in note, note


def test_the_range_comes_from_the_spread_of_later_epochs(clock: Clock) -> None:
    watch = BudgetWatch(trials=8, epochs=10, timeout=60, started=clock.now)
    watch.trial_started()
    # epochs 2-4 take 1, 5 and 3 s: the median 3 s says 1 trial, the fastest and slowest 5 and 1
    notes = _epochs(watch, clock, [5.0, 1.0, 5.0, 3.0])
    assert notes[:3] == [None] * 3
    assert "allows about 1 full trial(s) (1-5 by the fastest and the slowest of them; a rough estimate from " \
           "3 epoch(s)" in str(notes[3]), notes[3]
    assert "before the deadline" not in str(notes[3])  # --trials given: the deadline is not what ends the search


def test_final_note_leaves_the_first_epoch_out(clock: Clock) -> None:
    class Trial:
        # cumulative seconds per epoch: the first took 10 s (one-off costs), the others 0.5 s
        user_attrs = {"seconds": 11.5, "epochs": 4, "history": [{"seconds": s} for s in (10.0, 10.5, 11.0, 11.5)]}

    watch = BudgetWatch(trials=8, epochs=4, timeout=20)
    watch.trial_started()
    watch.trial_ended(Trial())
    (note,) = watch.final_notes()
    assert "only 1 trial(s) of the 8 requested ran: about 0.5 s per epoch x 4 epochs = 2.0 s a trial" in note, note
    assert "the median of 3 epoch(s)" in note and "For 8 trials use --timeout 20" in note, note


def test_final_note_without_trials_speaks_of_the_deadline(clock: Clock) -> None:
    class Trial:
        user_attrs = {"seconds": 2.0, "epochs": 4, "history": [{"seconds": s} for s in (0.5, 1.0, 1.5, 2.0)]}

    watch = BudgetWatch(trials=None, epochs=4, timeout=3)
    watch.trial_started()
    watch.trial_ended(Trial())
    (note,) = watch.final_notes()
    assert note.startswith("only 1 trial(s) ran before the deadline: about 0.5 s per epoch"), note
    assert "For 5 trials use --timeout 20" in note, note


def test_epoch_seconds_of_a_history_with_folds() -> None:
    assert budget.epoch_seconds_of([{"seconds": 1.0}, {"seconds": 1.5}, {"seconds": 0.75}, {"seconds": 1.25}]) == [
        1.0, 0.5, 0.75, 0.5]
    assert budget.epoch_seconds_of([{"val": 1.0}]) == []


def test_millisecond_epochs_are_judged_on_a_second_of_them(clock: Clock) -> None:
    # three quick 2 ms epochs after the first, then 6 ms ones: a trial of 500 takes about 3 s, and 7.5 s of
    # --timeout hold 2; judged on the three quick ones it would have said 7 (no note)
    watch = BudgetWatch(trials=8, epochs=500, timeout=7.5, started=clock.now)
    watch.trial_started()
    notes = _epochs(watch, clock, [0.05, 0.002, 0.002, 0.002] + [0.006] * 300)
    said = [(i + 1, n) for i, n in enumerate(notes) if n]
    assert len(said) == 1 and said[0][0] > 100, said  # after about a second of epochs, once
    assert "allows about 2 full trial(s)" in said[0][1] and "would allow 8" in said[0][1], said
