"""Optuna samplers by name: ``SAMPLERS`` maps each name to a factory ``(seed, space) -> sampler``.

``--sampler``'s help and the tests are generated from ``list_samplers()``, so a new entry here is
offered and tested without another edit.

``make_sampler`` wraps the named sampler in ``TrialSeededSampler``: the random stream of trial ``n``
is seeded from ``(seed, n)``, not from the process. A sampler seeded once per process restarts its
sequence in every process, so a resumed study (kill -9, then the same command) proposed trial 0's
parameters again as trial 3, and two workers with the same ``--seed`` proposed the same trials
(Optuna issue #4714; Optuna's advice is a different seed per process). Trial numbers are unique in a
study, so every trial gets its own stream whichever process runs it, and a fresh single-process study
stays reproducible from ``--seed``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError
from automl.search.space import Space, grid
from automl.study._family_race import FAMILY_PARAM, RACED_SAMPLERS

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial, TrialState

    from automl.models import Params

N_STARTUP_TRIALS = 5  # random trials before a model-based sampler takes over
FAMILY_SWAP_ATTR = "automl:family_swap"  # trial system attribute: "proposed->run" when the race swapped it
DEFAULT_SAMPLER = "tpe"


def _tpe(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP_TRIALS, multivariate=True, group=True)


def _random(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    # CMA-ES handles the numeric parameters; categorical ones go to a TPE sampler.
    return optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=N_STARTUP_TRIALS, warn_independent_sampling=False,
        independent_sampler=optuna.samplers.TPESampler(seed=seed),
    )


def _gp(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=N_STARTUP_TRIALS, warn_independent_sampling=False)


def _nsga2(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, N_STARTUP_TRIALS))


def _grid(seed: int | None, space: Space) -> BaseSampler:
    import optuna

    return optuna.samplers.GridSampler(grid(space), seed=seed)


SAMPLERS: dict[str, Callable[[int | None, Space], BaseSampler]] = {
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


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study searched with ``seed``: numpy's ``SeedSequence``
    of the pair, so that (seed 0, trial 1) and (seed 1, trial 0) are unrelated streams (``seed +
    number`` would make the study of seed 1 a shifted copy of the study of seed 0)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])  # uint32, as Optuna accepts


@functools.cache
def trial_seeded_sampler_class() -> type:
    """``TrialSeededSampler``, defined on first use: it subclasses Optuna's ``BaseSampler``, and
    importing Optuna when this module loads would cost every command (and every early error) its
    import time."""
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):  # type: ignore[misc]
        """The sampler ``factory(seed)`` builds, built afresh for each trial with ``trial_seed(seed,
        trial.number)`` (in ``before_trial``, which Optuna calls before any proposal for the trial).

        Rebuilding, not reseeding, keeps to Optuna's public API: every sampler here keeps what it learns
        in the study (TPE and GP refit on the stored trials, CMA-ES and NSGA-II store their state in the
        trials' system attributes), so a fresh instance proposes what the old one would have, from its
        own stream. ``seed=None`` passes through unseeded (Optuna's own entropy)."""

        def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int | None,
                     families: tuple[str, ...] = ()) -> None:
            self._factory = factory
            self._seed = seed
            self.base = factory(seed)  # until the first trial; also what ``reseed_rng`` reseeds
            self.seeded_for: int | None = None  # the trial number ``base`` was built for
            self.families = families  # the ``model`` choices the family race judges (() : no race)
            self._hopeless: frozenset[str] = frozenset()  # this trial's hopeless families
            self._rng: Any = None  # this trial's stream for a swapped family

        def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
            if self._seed is not None:
                self.base = self._factory(trial_seed(self._seed, trial.number))
                self.seeded_for = trial.number
            self._hopeless = frozenset()
            if self.families and "fixed_params" not in trial.system_attrs:  # an enqueued first runs as queued
                import numpy as np

                from automl.study._family_race import study_hopeless

                self._hopeless = study_hopeless(study)
                self._rng = np.random.default_rng(None if self._seed is None else [self._seed, trial.number, 1])
            self.base.before_trial(study, trial)

        def _raced(self, study: optuna.Study, trial: FrozenTrial, family: Any) -> Any:
            """``family``, or another family drawn uniformly when it is hopeless (``_family_race``)."""
            if family not in self._hopeless:
                return family
            others = [f for f in self.families if f not in self._hopeless]
            if not others:
                return family
            swapped = others[int(self._rng.integers(len(others)))]
            study._storage.set_trial_system_attr(trial._trial_id, FAMILY_SWAP_ATTR, f"{family}->{swapped}")
            return swapped

        def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
            return self.base.infer_relative_search_space(study, trial)

        def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution],
                            ) -> Params:
            params = self.base.sample_relative(study, trial, search_space)
            if self._hopeless and FAMILY_PARAM in params:
                params = {**params, FAMILY_PARAM: self._raced(study, trial, params[FAMILY_PARAM])}
            return params

        def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                               param_distribution: BaseDistribution) -> Any:  # a value, as Optuna types it
            value = self.base.sample_independent(study, trial, param_name, param_distribution)
            if self._hopeless and param_name == FAMILY_PARAM:
                value = self._raced(study, trial, value)
            return value

        def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                        values: Sequence[float] | None) -> None:
            self.base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.base.reseed_rng()

    return TrialSeededSampler


def make_sampler(name: str, seed: int | None, space: Space) -> BaseSampler:
    """The Optuna sampler called ``name`` over ``space`` (the grid sampler enumerates it), its random
    stream seeded per trial from ``seed`` and the trial number (``TrialSeededSampler``). A sampler that
    learns from the trials (``RACED_SAMPLERS``) over a space with several families also races them
    (``automl.study._family_race``): a hopeless family it proposes is swapped for another.

    The grid sampler is the exception: it shuffles the grid once from its seed and gives trial ``n``
    grid point ``n`` (then the unvisited ones), so one seed in every process already never repeats a
    point, while a sampler rebuilt per trial would reshuffle and repeat them."""
    factory = SAMPLERS[check_sampler(name)]
    if name == "grid":
        return factory(seed, space)
    families = tuple(str(f) for f in space.families) if name in RACED_SAMPLERS else ()
    return trial_seeded_sampler_class()(lambda s: factory(s, space), seed, families)



def enqueue_firsts(study: optuna.Study, firsts: list[Params]) -> int:
    """Queue the partial trials ``firsts`` (``Space.family_firsts``) that ``study`` does not hold yet,
    as long as it holds nothing but queued-first trials: once per study, whichever process opens it
    first. A process killed halfway through queueing them leaves the rest to the next one, a resumed
    study whose sampler has started gets none, and one already queued or run is not queued again
    (Optuna's ``skip_if_exists`` compares with every trial, waiting ones included). Returns how many
    were queued."""
    trials = study.get_trials(deepcopy=False)
    if any("fixed_params" not in t.system_attrs for t in trials):  # a sampled trial: past its firsts
        return 0
    before = len(trials)
    for params in firsts:
        study.enqueue_trial(params, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before
