"""Optuna trial pruners (early stopping of bad trials) by name: ``TRIAL_PRUNERS`` maps each name to
a factory ``(epochs) -> pruner`` sized for trials of at most that many epochs (or folds, with --cv:
the pruner's steps are then folds).

Steps are 1-based epochs. Rules every pruner here keeps, whatever its kind:

- **No verdict on the first epoch of a short schedule.** Up to 10 epochs a trial trains at least
  ``MIN_WARMUP`` (2) epochs before it can be judged: after one epoch many a good configuration still
  sits at the majority-class accuracy (a low learning rate, a GRU), and the text searches (5 epochs)
  pruned most of their trials there. The median pruner waits a third of the epochs when that is
  more; the successive-halving pruners put their first rung at ``MIN_WARMUP`` epochs.
- **No verdict on the last epoch**: stopping there saves no training, and the trial's result is lost.

``warmup_epochs`` gives the warm-up; ``benchmarks/pruner_replay.py`` replays the rules on the learning
curves of unpruned studies (the figures are in ``docs/search.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Container

    import optuna
    from optuna.pruners import BasePruner
    from optuna.trial import FrozenTrial, TrialState

DEFAULT_TRIAL_PRUNER = "median"
MIN_WARMUP = 2  # epochs: a trial of a schedule of 2+ epochs is never judged on its first
SHORT_SCHEDULE = 10  # epochs: up to this many, the warm-up is MIN_WARMUP; past it a third of them
FAMILY_PEERS = 2  # completed trials of a family before its trials are judged against their own kind
# A trial of a family with fewer peers is judged against the whole study, and leniently (its kind may
# learn slower than the study's median): stopped only when, after the warm-up, it has not improved on
# its first epoch and sits below the study's 25th percentile at the same epoch. Without this rule a
# family's second trial was never stopped: a 40 s/epoch TabM still at the majority-class accuracy
# ran a 180 s tabular search to its deadline (issue 22).
LONE_PERCENTILE = 75.0  # Optuna's sense: the best 75% of trials at an epoch are kept


def warmup_epochs(epochs: int) -> int:
    """Epochs a trial of at most ``epochs`` epochs trains before a trial pruner may judge it (at the
    end of that epoch at the earliest): ``MIN_WARMUP`` up to ``SHORT_SCHEDULE`` epochs, a third past."""
    return max(MIN_WARMUP, epochs // 3)


def family_median(epochs: int, warmup: int | None = None, spare_last: bool = True) -> BasePruner:
    """The ``median`` trial pruner: Optuna's median rule (two completed trials needed) per model
    family, judging from the end of epoch ``warmup`` (default ``warmup_epochs(epochs)``) and, with
    ``spare_last``, never at epoch ``epochs``. The other arguments are for benchmarks/pruner_replay.py."""
    import optuna

    steps = warmup_epochs(epochs) if warmup is None else warmup
    inner = optuna.pruners.MedianPruner(n_startup_trials=FAMILY_PEERS, n_warmup_steps=steps)
    lone = _unless_learning(optuna.pruners.PercentilePruner(
        LONE_PERCENTILE, n_startup_trials=FAMILY_PEERS, n_warmup_steps=steps, n_min_trials=FAMILY_PEERS))
    return _per_family(inner, epochs if spare_last else None, lone)


def _unless_learning(inner: BasePruner) -> BasePruner:
    """``inner``, asked only about a trial whose best value so far is no better than its first epoch's:
    one still where it started (a classifier at the majority-class accuracy) has shown nothing to wait
    for, while one that improves may be a slow starter."""
    import optuna

    class UnlessLearning(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            values = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
            if len(values) < 2:
                return False
            best = max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)
            return best == values[0] and bool(inner.prune(study, trial))

    return UnlessLearning()


def _median(epochs: int) -> BasePruner:
    return family_median(epochs)


def _per_family(inner: BasePruner, last_step: int | None, lone: BasePruner | None = None) -> BasePruner:
    """``inner`` judging a trial against completed trials of its own model family only (the ``model``
    parameter), with its startup trials counted per family: a GRU that learns slower than a TextCNN in
    its first epochs, or a tree ensemble with one step, is compared with its own kind. A trial whose
    family has fewer than ``FAMILY_PEERS`` completed trials is judged by ``lone`` (None: not judged)
    against the whole study. A trial at ``last_step`` (its last epoch; None: no such rule) is never
    pruned."""
    import optuna

    complete = (optuna.trial.TrialState.COMPLETE,)

    class _FamilyView:
        """The study as ``inner`` sees it: its trials filtered to one family; all else passes through."""

        def __init__(self, study: optuna.Study, family: object) -> None:
            self._study, self._family = study, family

        def get_trials(self, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
            return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                    if t.params.get("model") == self._family]

        def __getattr__(self, name: str) -> Any:
            return getattr(self._study, name)

    class PerFamilyPruner(optuna.pruners.BasePruner):
        def __init__(self) -> None:
            self.inner = inner
            self.last_step = last_step

        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            if _at_last_step(trial, last_step):
                return False
            if "model" not in trial.params:
                return bool(inner.prune(study, trial))
            family = _FamilyView(study, trial.params["model"])
            if lone is not None and len(family.get_trials(deepcopy=False, states=complete)) < FAMILY_PEERS:
                return bool(lone.prune(study, trial))
            return bool(inner.prune(family, trial))

    return PerFamilyPruner()


def _at_last_step(trial: FrozenTrial, last_step: int | None) -> bool:
    step = trial.last_step
    return last_step is not None and step is not None and step >= last_step


def _last_step_spared(inner: BasePruner, last_step: int) -> BasePruner:
    """``inner``, except that a trial at ``last_step`` is never pruned."""
    import optuna

    class LastStepSpared(optuna.pruners.BasePruner):
        def __init__(self) -> None:
            self.inner = inner
            self.last_step = last_step

        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            return not _at_last_step(trial, last_step) and bool(inner.prune(study, trial))

    return LastStepSpared()


def _first_rung(epochs: int) -> int:
    """The epoch of the successive-halving pruners' first rung: ``MIN_WARMUP`` for a short schedule
    (2 to ``SHORT_SCHEDULE`` epochs), the first epoch for a longer one (rungs at 1, 3, 9, ... epochs)."""
    return MIN_WARMUP if MIN_WARMUP <= epochs <= SHORT_SCHEDULE else 1


def _hyperband(epochs: int) -> BasePruner:
    import optuna

    # not wrapped to spare the last epoch: Optuna's samplers see each Hyperband bracket as a study of
    # its own only when the study's pruner *is* a HyperbandPruner (optuna.pruners._filter_study)
    return optuna.pruners.HyperbandPruner(min_resource=_first_rung(epochs), max_resource=max(1, epochs),
                                          reduction_factor=3)


def _sha(epochs: int) -> BasePruner:
    import optuna

    return _last_step_spared(optuna.pruners.SuccessiveHalvingPruner(min_resource=_first_rung(epochs),
                                                                    reduction_factor=3), epochs)


def _none(epochs: int) -> BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


TRIAL_PRUNERS: dict[str, Callable[[int], BasePruner]] = {
    "hyperband": _hyperband,
    "median": _median,
    "sha": _sha,
    "none": _none,
}


def list_trial_pruners() -> list[str]:
    """The names ``--pruner`` accepts."""
    return list(TRIAL_PRUNERS)


def check_trial_pruner(name: str) -> str:
    """``name`` when it is a known trial pruner; ConfigError listing the names otherwise."""
    if name not in TRIAL_PRUNERS:
        raise ConfigError(f"unknown pruner {name!r} (choose from: {', '.join(TRIAL_PRUNERS)})")
    return name


def make_trial_pruner(name: str, epochs: int) -> BasePruner:
    """The trial pruner called ``name`` for trials of at most ``epochs`` epochs."""
    return TRIAL_PRUNERS[check_trial_pruner(name)](epochs)
