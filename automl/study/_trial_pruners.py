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

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 3))


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
