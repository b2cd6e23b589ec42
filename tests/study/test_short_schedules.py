"""Trial pruners on short schedules (issue 22): no verdict on the first epoch of 2-10 epoch trials (a
trial at the majority-class score after one epoch has not started learning), none on the last epoch
(nothing is saved), and the median rule still stops a trial behind its family's median in between."""

from __future__ import annotations

import optuna
import pytest

from automl.study._trial_pruners import make_trial_pruner, warmup_epochs

MAJORITY = 0.5  # a balanced binary validation set: a constant predictor's accuracy


def _study(pruner_name: str, epochs: int, completed: int = 3) -> optuna.Study:
    """A study whose ``completed`` TextCNN trials learned well from their first epoch (run through
    ``should_prune`` like real ones, so the successive-halving pruners record their rungs)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_trial_pruner(pruner_name, epochs))
    for _ in range(completed):
        _verdicts(study, [0.70 + 0.01 * e for e in range(epochs)], complete=True)
    return study


def _verdicts(study: optuna.Study, values: list[float], complete: bool = False) -> list[bool]:
    """``should_prune`` after each epoch of a TextCNN trial reporting ``values`` (it is not stopped)."""
    study.enqueue_trial({"model": "textcnn"})
    trial = study.ask()
    trial.suggest_categorical("model", ["textcnn", "gru"])
    out = []
    for epoch, value in enumerate(values, 1):
        trial.report(value, epoch)
        out.append(trial.should_prune())
    if complete:
        study.tell(trial, values[-1])
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return out


@pytest.mark.parametrize("pruner", ["median", "sha", "hyperband"])
@pytest.mark.parametrize("epochs", [2, 3, 5, 10])
def test_a_trial_at_the_majority_score_after_one_epoch_is_not_judged(pruner: str, epochs: int) -> None:
    assert _verdicts(_study(pruner, epochs), [MAJORITY])[0] is False


@pytest.mark.parametrize("pruner", ["median", "sha"])
@pytest.mark.parametrize("epochs", [2, 3, 5])
def test_the_last_epoch_is_never_judged(pruner: str, epochs: int) -> None:
    assert _verdicts(_study(pruner, epochs), [MAJORITY] * epochs)[-1] is False


def test_the_median_rule_stops_a_trial_behind_its_family_from_the_end_of_its_warm_up() -> None:
    # 5 epochs (the text task): judged after epochs 2, 3 and 4; a trial still at the majority score
    # after two epochs is stopped there, one that caught up is not
    assert warmup_epochs(5) == 2
    assert _verdicts(_study("median", 5), [MAJORITY] * 4) == [False, True, True, True]
    assert _verdicts(_study("median", 5), [MAJORITY, 0.72, 0.73, 0.74]) == [False, False, False, False]
    # 10 epochs (image, tabular): a third of them, as before
    assert warmup_epochs(10) == 3 and warmup_epochs(30) == 10 and warmup_epochs(1) == 2
    assert _verdicts(_study("median", 10), [MAJORITY] * 9) == [False, False] + [True] * 7


def test_sha_puts_its_first_rung_after_two_epochs_on_a_short_schedule() -> None:
    assert _verdicts(_study("sha", 5), [MAJORITY] * 2) == [False, True]  # judged at its rung, epoch 2
