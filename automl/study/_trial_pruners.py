"""Optuna trial pruners (early stopping of bad trials) by name: ``TRIAL_PRUNERS`` maps each name to
a factory ``(epochs) -> pruner`` sized for trials of at most that many epochs.

``--pruner``'s help and the tests are generated from ``list_trial_pruners()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automl.exceptions import ConfigError

DEFAULT_TRIAL_PRUNER = "median"


def _median(epochs: int) -> Any:
    import optuna

    return _per_family(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 3)))


def _per_family(inner: Any) -> Any:
    """``inner`` judging a trial against completed trials of its own model family only (the ``model``
    parameter), with its startup trials counted per family: a GRU that learns slower than a TextCNN in
    its first epochs, or a tree ensemble with one step, is compared with its own kind."""
    import optuna

    class _FamilyView:
        """The study as ``inner`` sees it: its trials filtered to one family; all else passes through."""

        def __init__(self, study: Any, family: Any) -> None:
            self._study, self._family = study, family

        def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
            return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                    if t.params.get("model") == self._family]

        def __getattr__(self, name: str) -> Any:
            return getattr(self._study, name)

    class PerFamilyPruner(optuna.pruners.BasePruner):
        def __init__(self) -> None:
            self.inner = inner

        def prune(self, study: Any, trial: Any) -> bool:
            if "model" not in trial.params:
                return bool(inner.prune(study, trial))
            return bool(inner.prune(_FamilyView(study, trial.params["model"]), trial))

    return PerFamilyPruner()


def _hyperband(epochs: int) -> Any:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)


def _sha(epochs: int) -> Any:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _none(epochs: int) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


TRIAL_PRUNERS: dict[str, Callable[[int], Any]] = {
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


def make_trial_pruner(name: str, epochs: int) -> Any:
    """The trial pruner called ``name`` for trials of at most ``epochs`` epochs."""
    return TRIAL_PRUNERS[check_trial_pruner(name)](epochs)
