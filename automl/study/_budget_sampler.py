"""A latency budget's help to a model-based sampler: do not propose a network already timed over it.

Optuna 5's TPE reads the constraint each over-budget trial sets (``latency_ms - budget`` > 0: the
trial counts as infeasible, in the "worse" group of its density split) and so proposes such networks
less often; alone that is slow to learn (a few infeasible trials among many widen the "worse"
density only a little). The study's latency cache knows exactly which networks are over the budget,
so ``BudgetAwareSampler`` checks each relative proposal: when its network is known over the budget,
the proposal is shown to the sampler as one more infeasible observation (a trial that exists only in
the sampler's view of the study, never stored) and the sampler draws again, up to ``REDRAWS`` times.
Redrawing alone would not do: TPE picks the best of its candidates by a ratio of densities, and as
long as the over-budget region has few observations it keeps picking it. The random and grid
samplers are left as they are: uniform or exhaustive proposals are what they promise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Container, Sequence

    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial, TrialState

    from automl.models import Params
    from automl.study._run import StudyRun

REDRAWS = 20  # most draws of one relative proposal before the last is taken anyway
LEARNING_SAMPLERS = ("tpe", "gp", "cmaes", "nsga2")  # samplers that model the study's trials


def _base_class() -> type:
    import optuna

    return optuna.samplers.BaseSampler


class BudgetAwareSampler(_base_class()):  # type: ignore[misc]
    """``base`` with every relative proposal whose network ``known_over(study, params)`` says was timed
    over the budget drawn again. ``known_over`` is bound after the study is opened (``bind``); until
    then proposals pass unchanged. ``redrawn`` counts proposals drawn again (for the benchmark)."""

    def __init__(self, base: BaseSampler, redraws: int = REDRAWS) -> None:
        self.base = base
        self.redraws = redraws
        #: (study, params) -> how far over the budget the proposal's network is known to be (ms), or None
        self.known_over: Callable[[optuna.Study, Params], float | None] | None = None
        self.redrawn = 0
        self._phantoms: dict[str, list[FrozenTrial]] = {}  # study name -> infeasible observations of rejected proposals

    def bind(self, known_over: Callable[[optuna.Study, Params], float | None]) -> None:
        self.known_over = known_over

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution],
                        ) -> Params:
        params = self.base.sample_relative(study, trial, search_space)
        if self.known_over is None or not params:
            return params
        phantoms = self._phantoms.setdefault(study.study_name, [])
        for _ in range(self.redraws):
            over = self.known_over(study, params)
            if over is None:
                break
            self.redrawn += 1
            phantoms.append(_infeasible(params, search_space, over))
            params = self.base.sample_relative(_StudyView(study, phantoms), trial, search_space)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:  # a value, as Optuna types it
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def _infeasible(params: Params, space: dict[str, BaseDistribution], over: float) -> FrozenTrial:
    """A pruned trial with ``params`` and the constraint ``over`` (> 0): what the sampler would have seen
    had the proposal been run (and ended over the budget)."""
    import optuna

    from automl.runtime.latency import CONSTRAINT

    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params=params,
        distributions={k: space[k] for k in params if k in space},
        system_attrs={f"constraints:{CONSTRAINT}": float(over)},
    )


class _StudyView:
    """A study as the sampler sees it: the stored trials plus ``extra`` (never stored)."""

    def __init__(self, study: optuna.Study, extra: list[FrozenTrial]) -> None:
        self._study = study
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = list(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))
        return trials + [t for t in self._extra if states is None or t.state in states]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def install_budget_sampler(run: StudyRun, sampler_name: str) -> None:
    """With a latency budget and a sampler that models the trials (``LEARNING_SAMPLERS``), wrap the
    run's sampler in ``BudgetAwareSampler`` with the rule: a proposal is known over the budget when its
    network's timing in the study's cache is over it. Parameters the proposal lacks (sampled
    independently later) leave the network unknown, and the proposal passes."""
    if run.latency is None or run.latency.max_latency_ms is None or sampler_name not in LEARNING_SAMPLERS:
        return
    sampler = BudgetAwareSampler(run.study.sampler)
    run.study.sampler = sampler
    from automl.runtime.latency import cache_key, cached

    fixed = {p.name: p.value for p in run.space.params if p.type == "fixed"}
    sampled = set(run.space.names) - set(fixed)
    max_latency_ms, target = run.latency.max_latency_ms, run.latency.target

    def known_over(study: optuna.Study, params: Params) -> float | None:
        full = {**fixed, **params}
        try:
            family = run.task.model_family(full)
            if any(n in sampled and n not in full for n in family.params):
                return None
            if family.direct_fit:  # timed after fitting: its size is not known from the parameters
                return None
            meta = run.bundle.meta
            arch = run.task.arch_from_params(full, meta)
            key = cache_key(arch, tuple(run.task.example_input(meta, 1).shape[1:]), target)
        except (KeyError, TypeError, ValueError):
            return None
        m = cached(study, key)
        return m.latency_ms - max_latency_ms if m is not None and m.latency_ms > max_latency_ms else None

    sampler.bind(known_over)
