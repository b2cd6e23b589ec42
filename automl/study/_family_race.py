"""Which model families a search stops proposing: those whose best trial is hopelessly behind.

A space with several families (``model``: hgb, catboost, rf, extratrees, mlp, resmlp, tabm) leaves
the choice of family to the sampler, and TPE chooses badly between families of very different
quality. Its "good" group is the best 10 % of the trials, so after a few weak trials of the leading
family TPE favours the families it has seen least, however bad their one trial was. On a synthetic
5-class table where every tree family scores 0.41–0.55 and the networks 0.90–0.94, a TPE sampler
rebuilt at trial 13 of a real search proposed a tree family in 31 of 40 seeds, never an MLP or a
ResNet. That search spent 100 of its 180 s on trees (23–35 s a trial), and ended 4.6 test points
below the four-family search it replaced.

The rule (``hopeless``): the leader is the family with the best value among the finished trials; a
family is hopeless when its best is further from the leader's than ``BEHIND`` (0.4) of the distance
from chance (``chance_score``: the metric of a constant prediction, the class priors or the training
mean) to the leader's. On that table the trees are 0.53–0.71 of the way behind; on the other
shared sets every family stayed within 0.33 in 17 searches (the LightGBM binary set at worst;
diamonds 0.01, Movie Review 0.09, txhousing 0.09), so there the rule changed nothing. A family
with no finished trial is not judged.

``TrialSeededSampler`` swaps a hopeless family the sampler proposes for one of the others, drawn
uniformly from the trial's own random stream, as long as the hopeless families have had at least
``EXPLORE`` (10 %) of the time of the study's finished trials: a long search still spends a tenth of
its time on them, and a family that improves there is judged again on every trial. Only single-
objective studies are raced (a Pareto front has no leader).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automl.data.bundle import DataBundle
    from automl.search.space import Space

FAMILY_PARAM = "model"
BEHIND = 0.4  # a family this far behind the leader (fraction of the leader's lead over chance) is hopeless
EXPLORE = 0.1  # the share of the finished trials' time that hopeless families may still have
CHANCE_ATTR = "chance_score"  # study user attribute: the metric of a constant prediction on validation
RACED_SAMPLERS = ("tpe", "gp", "cmaes")  # samplers whose family choice the race corrects


def races(space: Space, sampler: str) -> bool:
    """Whether a search of ``space`` with ``sampler`` races its families (and so needs a chance score)."""
    return sampler in RACED_SAMPLERS and bool(space.families)


def hopeless(trials: Iterable[FrozenTrial], maximize: bool, chance: float | None) -> frozenset[str]:
    """The families of ``trials`` that are hopelessly behind the leader (see the module's rule); empty
    without a chance score, with fewer than two judged families, or while hopeless families have had
    less than ``EXPLORE`` of the finished trials' time."""
    if chance is None or not math.isfinite(chance):
        return frozenset()
    best: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for t in trials:
        family = t.params.get(FAMILY_PARAM)
        if not isinstance(family, str) or not t.state.is_finished():
            continue
        if t.datetime_start is not None and t.datetime_complete is not None:
            seconds[family] = seconds.get(family, 0.0) + (t.datetime_complete - t.datetime_start).total_seconds()
        value = t.value if t.state.name == "COMPLETE" and t.values is not None and len(t.values) == 1 else None
        if value is None or not math.isfinite(value):
            continue
        if family not in best or (value > best[family] if maximize else value < best[family]):
            best[family] = value
    if len(best) < 2:
        return frozenset()
    leader = max(best.values()) if maximize else min(best.values())
    lead = abs(leader - chance)
    if lead == 0.0:
        return frozenset()
    behind = frozenset(f for f, v in best.items() if abs(leader - v) > BEHIND * lead)
    total = sum(seconds.values())
    if not behind or sum(seconds.get(f, 0.0) for f in behind) < EXPLORE * total:
        return frozenset()
    return behind


def study_hopeless(study: optuna.Study) -> frozenset[str]:
    """``hopeless`` for ``study``'s trials, with its direction and stored chance score (single
    objective only)."""
    if len(study.directions) != 1:
        return frozenset()
    chance = study.user_attrs.get(CHANCE_ATTR)
    if isinstance(chance, bool) or not isinstance(chance, (int, float)):  # absent, or not ours: no race
        chance = None
    trials = study.get_trials(deepcopy=False)
    return hopeless(trials, study.direction.name == "MAXIMIZE", chance)


def record_chance(study: optuna.Study, task: Any, bundle: DataBundle) -> None:
    """Store ``task.chance_score(bundle)`` in ``study`` once (the first process that loads the data).
    Only a raced search calls it: scoring imports scikit-learn's metrics (about 1 s before the first
    trial of an image search, which has one family)."""
    if CHANCE_ATTR in study.user_attrs:
        return
    chance = task.chance_score(bundle)
    if chance is not None and math.isfinite(chance):
        study.set_user_attr(CHANCE_ATTR, float(chance))
