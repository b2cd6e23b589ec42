"""A trial that cannot finish before the deadline and is behind the study is stopped, from any epoch."""

from __future__ import annotations

import optuna

from automl.search.objective_deadline import cannot_catch_up


def _study(pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for curve in ([0.57, 0.67, 0.70], [0.60, 0.66, 0.71], [0.52, 0.57, 0.65]):
        study.add_trial(optuna.trial.create_trial(value=curve[-1], intermediate_values=dict(enumerate(curve, 1))))
    return study


def test_a_slow_trial_behind_the_median_is_stopped_on_its_first_epoch() -> None:
    study = _study()
    # 40 s per epoch, 9 epochs left, 100 s to the deadline: it cannot finish; 0.531 < median 0.57
    why = cannot_catch_up(study, 9, 1, 10, 0.531, 40.0, deadline=1100.0, now=1000.0)
    assert why is not None and "cannot finish its 10 epochs" in why and "0.5310 vs 0.5700" in why


def test_a_trial_that_can_finish_or_leads_or_is_alone_goes_on() -> None:
    study = _study()
    assert cannot_catch_up(study, 9, 1, 10, 0.531, 10.0, deadline=1100.0, now=1000.0) is None  # 90 s: fits
    assert cannot_catch_up(study, 9, 1, 10, 0.61, 40.0, deadline=1100.0, now=1000.0) is None  # ahead of the median
    assert cannot_catch_up(study, 9, 3, 3, 0.10, 40.0, deadline=1001.0, now=1000.0) is None  # its last epoch
    assert cannot_catch_up(study, 9, 4, 10, 0.10, 40.0, deadline=1100.0, now=1000.0) is None  # no peer reached epoch 4
    lone = optuna.create_study(direction="maximize")
    assert cannot_catch_up(lone, 0, 1, 10, 0.10, 40.0, deadline=1100.0, now=1000.0) is None  # no peers at all
    nop = _study(optuna.pruners.NopPruner())
    assert cannot_catch_up(nop, 9, 1, 10, 0.10, 40.0, deadline=1100.0, now=1000.0) is None  # --pruner none


def test_minimize_direction() -> None:
    study = optuna.create_study(direction="minimize")
    for curve in ([900.0, 700.0], [800.0, 650.0]):
        study.add_trial(optuna.trial.create_trial(value=curve[-1], intermediate_values=dict(enumerate(curve, 1))))
    assert cannot_catch_up(study, 5, 1, 10, 1500.0, 40.0, deadline=1100.0, now=1000.0) is not None  # RMSE above
    assert cannot_catch_up(study, 5, 1, 10, 700.0, 40.0, deadline=1100.0, now=1000.0) is None
