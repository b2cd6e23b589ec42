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


def test_a_lone_trial_that_learns_nothing_is_judged_against_the_whole_study() -> None:
    """A family with fewer than two completed trials: its trial is stopped after the warm-up when it
    has not improved on its first epoch and sits below the study's 25th percentile; one that improves
    is left alone however slow (the slow GRU above)."""
    pruner = make_trial_pruner("median", 10)  # warm-up: 3 epochs
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for curve in ([0.57, 0.67, 0.69, 0.70], [0.60, 0.66, 0.70, 0.71], [0.52, 0.57, 0.61, 0.65]):
        _add(study, "textcnn", curve)
    _add(study, "gru", [0.53, 0.67, 0.70, 0.71])  # one completed gru: too few peers
    stuck = _add(study, "gru", [0.531, 0.526], complete=False)
    assert pruner.prune(study, stuck) is False  # still in its warm-up
    stuck = _add(study, "gru", [0.531, 0.526, 0.531], complete=False)
    assert pruner.prune(study, stuck) is True  # flat at its first value, below the 25th percentile
    learning = _add(study, "gru", [0.50, 0.52, 0.55], complete=False)
    assert pruner.prune(study, learning) is False  # below the study, but improving: a slow starter
    fine = _add(study, "gru", [0.69, 0.69, 0.69], complete=False)
    assert pruner.prune(study, fine) is False  # flat, but not below the 25th percentile (0.67)
