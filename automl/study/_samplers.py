"""Optuna samplers by name: ``SAMPLERS`` maps each name to a factory ``(seed, space) -> sampler``.

``--sampler``'s help and the tests are generated from ``list_samplers()``, so a new entry here is
offered and tested without another edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automl.exceptions import ConfigError
from automl.space import Space, grid

N_STARTUP_TRIALS = 5  # random trials before a model-based sampler takes over
DEFAULT_SAMPLER = "tpe"


def _tpe(seed: int | None, space: Space) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP_TRIALS, multivariate=True, group=True)


def _random(seed: int | None, space: Space) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int | None, space: Space) -> Any:
    import optuna

    # CMA-ES handles the numeric parameters; categorical ones go to a TPE sampler.
    return optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=N_STARTUP_TRIALS, warn_independent_sampling=False,
        independent_sampler=optuna.samplers.TPESampler(seed=seed),
    )


def _gp(seed: int | None, space: Space) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=N_STARTUP_TRIALS, warn_independent_sampling=False)


def _nsga2(seed: int | None, space: Space) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, N_STARTUP_TRIALS))


def _grid(seed: int | None, space: Space) -> Any:
    import optuna

    return optuna.samplers.GridSampler(grid(space), seed=seed)


SAMPLERS: dict[str, Callable[[int | None, Space], Any]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "gp": _gp,
    "nsga2": _nsga2,
    "grid": _grid,
}


def list_samplers() -> list[str]:
    """The names ``--sampler`` accepts."""
    return list(SAMPLERS)


def check_sampler(name: str) -> str:
    """``name`` when it is a known sampler; ConfigError listing the names otherwise."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r} (choose from: {', '.join(SAMPLERS)})")
    return name


def make_sampler(name: str, seed: int | None, space: Space) -> Any:
    """The Optuna sampler called ``name``, seeded, over ``space`` (the grid sampler enumerates it)."""
    return SAMPLERS[check_sampler(name)](seed, space)
