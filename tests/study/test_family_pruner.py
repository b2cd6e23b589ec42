"""The default median pruner compares a trial only with completed trials of its own model family."""

from __future__ import annotations

import optuna

from automl.study._trial_pruners import make_trial_pruner


def _add(study: optuna.Study, family: str, curve: list[float], complete: bool = True) -> optuna.trial.FrozenTrial:
    dist = {"model": optuna.distributions.CategoricalDistribution(["textcnn", "gru"])}
    trial = optuna.trial.create_trial(
        params={"model": family}, distributions=dist, value=curve[-1] if complete else None,
        intermediate_values=dict(enumerate(curve, 1)),
        state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.RUNNING)
    study.add_trial(trial)
    return study.trials[-1]


def test_a_slow_starting_family_is_not_judged_by_a_fast_one() -> None:
    pruner = make_trial_pruner("median", 6)  # warm-up: 2 epochs
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(3):
        _add(study, "textcnn", [0.60, 0.70, 0.75, 0.76])
    slow_gru = _add(study, "gru", [0.51, 0.55, 0.60], complete=False)
    weak_cnn = _add(study, "textcnn", [0.50, 0.55, 0.60], complete=False)
    assert pruner.prune(study, weak_cnn) is True  # below its own family's median at epoch 3
    assert pruner.prune(study, slow_gru) is False  # no completed gru yet: its startup trials
    # once two grus completed, a gru below their median is pruned
    _add(study, "gru", [0.55, 0.65, 0.72])
    _add(study, "gru", [0.56, 0.66, 0.73])
    assert pruner.prune(study, slow_gru) is True
    # the plain median (one pool) would have pruned the first slow gru at once
    plain = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    fresh = optuna.create_study(direction="maximize")
    for _ in range(3):
        _add(fresh, "textcnn", [0.60, 0.70, 0.75, 0.76])
    assert bool(plain.prune(fresh, _add(fresh, "gru", [0.51, 0.55, 0.60], complete=False))) is True
