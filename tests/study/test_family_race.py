"""The family race (automl.study._family_race): a family far behind the leader, measured against the
score of a constant prediction, is no longer proposed while it has had its share of the time; close
families are left to the sampler unchanged (issue 22, point 6: seven families diluted the search)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from automl.data.bundle import DataBundle
from automl.search.space import parse_space, sample
from automl.study import silence_optuna
from automl.study._family_race import BEHIND, CHANCE_ATTR, EXPLORE, hopeless, record_chance, study_hopeless
from automl.study._samplers import FAMILY_SWAP_ATTR, make_sampler
from automl.tasks import get_task

SPACE = parse_space(yaml.safe_load("""\
params:
  model: {type: categorical, choices: [net, tree, forest]}
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, when: {model: [net]}}
  leaves: {type: int, low: 2, high: 64, when: {model: [tree]}}
  trees: {type: int, low: 10, high: 100, when: {model: [forest]}}
"""), "<test>")

T0 = dt.datetime(2026, 1, 1)


def _trial(model: str, value: float | None, seconds: float = 1.0, state: str = "COMPLETE",
           extra: dict | None = None) -> optuna.trial.FrozenTrial:
    params = {"model": model, **(extra or {})}
    done = state == "COMPLETE"
    return optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=optuna.trial.TrialState[state], value=value if done else None, values=None,
        datetime_start=T0, datetime_complete=T0 + dt.timedelta(seconds=seconds), params=params,
        distributions={k: SPACE_DISTS[k] for k in params}, user_attrs={}, system_attrs={},
        intermediate_values={},
    )


SPACE_DISTS = {
    "model": optuna.distributions.CategoricalDistribution(["net", "tree", "forest"]),
    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "leaves": optuna.distributions.IntDistribution(2, 64),
    "trees": optuna.distributions.IntDistribution(10, 100),
}


def test_a_family_far_behind_the_leader_is_hopeless_and_a_close_one_is_not() -> None:
    # chance 0.2, leader 0.9: the lead is 0.7; "tree" is 0.4 behind (0.57 of it), "forest" 0.1 (0.14)
    trials = [_trial("net", 0.9), _trial("tree", 0.5), _trial("forest", 0.8)]
    assert hopeless(trials, maximize=True, chance=0.2) == {"tree"}
    # the boundary: BEHIND of the lead is still in the race, a little more is not
    assert hopeless([_trial("net", 0.9), _trial("tree", 0.9 - BEHIND * 0.7 + 1e-9)], True, 0.2) == frozenset()
    assert hopeless([_trial("net", 0.9), _trial("tree", 0.9 - BEHIND * 0.7 - 1e-6)], True, 0.2) == {"tree"}


def test_the_race_minimizes_too_and_judges_a_family_by_its_best_completed_trial() -> None:
    # RMSE: chance 100, leader 10; "tree" best 20 (0.11 of the lead behind) despite a bad 95
    trials = [_trial("net", 10.0), _trial("tree", 95.0), _trial("tree", 20.0), _trial("forest", 60.0)]
    assert hopeless(trials, maximize=False, chance=100.0) == {"forest"}
    # pruned and failed trials are no result: a family with nothing completed is not judged
    trials = [_trial("net", 0.9), _trial("tree", None, state="PRUNED"), _trial("forest", None, state="FAIL")]
    assert hopeless(trials, maximize=True, chance=0.2) == frozenset()


def test_no_race_without_a_chance_score_or_a_second_judged_family() -> None:
    assert hopeless([_trial("net", 0.9), _trial("tree", 0.3)], True, None) == frozenset()
    assert hopeless([_trial("net", 0.9), _trial("tree", 0.3)], True, float("nan")) == frozenset()
    assert hopeless([_trial("net", 0.9), _trial("net", 0.3)], True, 0.2) == frozenset()
    assert hopeless([_trial("net", 0.2), _trial("tree", 0.2)], True, 0.2) == frozenset()  # no lead over chance


def test_hopeless_families_keep_their_share_of_the_time() -> None:
    # "tree" has had 1 s of 100 s (under EXPLORE): it may still be proposed; with its share it may not
    short = [_trial("net", 0.9, seconds=99.0), _trial("tree", 0.3, seconds=1.0)]
    assert EXPLORE * 100 > 1.0
    assert hopeless(short, True, 0.2) == frozenset()
    fair = [_trial("net", 0.9, seconds=90.0), _trial("tree", 0.3, seconds=EXPLORE * 100 + 0.5)]
    assert hopeless(fair, True, 0.2) == {"tree"}


def _study(sampler: str, chance: float | None, firsts: dict[str, float], seed: int = 0) -> optuna.Study:
    silence_optuna()
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, seed, SPACE))
    if chance is not None:
        study.set_user_attr(CHANCE_ATTR, chance)
    extras = {"net": {"lr": 1e-3}, "tree": {"leaves": 31}, "forest": {"trees": 50}}
    for model, value in firsts.items():
        study.add_trial(_trial(model, value, seconds=5.0, extra=extras[model]))
    return study


def _proposals(study: optuna.Study, n: int) -> list[str]:
    out = []
    for _ in range(n):
        trial = study.ask()
        params = sample(trial, SPACE)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # no result: the judgement stays the same
        out.append(params["model"])
    return out


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes"])
def test_a_learning_sampler_never_proposes_a_hopeless_family(sampler: str) -> None:
    study = _study(sampler, 0.2, {"net": 0.9, "tree": 0.3, "forest": 0.85})
    models = _proposals(study, 25)
    assert "tree" not in models
    assert {"net", "forest"} <= set(models)  # the others share the trials
    # without the chance score nothing is judged: TPE left alone proposes the unseen-looking family
    alone = _proposals(_study(sampler, None, {"net": 0.9, "tree": 0.3, "forest": 0.85}), 25)
    assert "tree" in alone


@pytest.mark.parametrize("stored", ["0.2", [0.2], True])
def test_a_chance_score_that_is_not_a_number_means_no_race(stored: object) -> None:
    study = _study("tpe", None, {"net": 0.9, "tree": 0.3, "forest": 0.85})
    study.set_user_attr(CHANCE_ATTR, stored)  # a study database edited by hand
    assert study_hopeless(study) == frozenset()
    assert len(_proposals(study, 3)) == 3


def test_a_swap_is_recorded_on_the_trial() -> None:
    study = _study("tpe", 0.2, {"net": 0.9, "tree": 0.3, "forest": 0.85})
    _proposals(study, 25)
    swaps = [t.system_attrs[FAMILY_SWAP_ATTR] for t in study.trials if FAMILY_SWAP_ATTR in t.system_attrs]
    assert swaps and all(s.startswith("tree->") and s.split("->")[1] in ("net", "forest") for s in swaps)


def test_close_families_get_exactly_the_samplers_own_proposals() -> None:
    raced = _study("tpe", 0.2, {"net": 0.9, "tree": 0.85, "forest": 0.88})
    plain = _study("tpe", None, {"net": 0.9, "tree": 0.85, "forest": 0.88})
    assert _proposals(raced, 15) == _proposals(plain, 15)
    assert not any(FAMILY_SWAP_ATTR in t.system_attrs for t in raced.trials)


def test_uniform_samplers_and_one_family_spaces_are_not_raced() -> None:
    assert SPACE.families == ("net", "tree", "forest")
    one = parse_space(yaml.safe_load("params:\n  model: {type: categorical, choices: [net]}\n"), "<t>")
    assert one.families == ()
    models = _proposals(_study("random", 0.2, {"net": 0.9, "tree": 0.3, "forest": 0.85}), 30)
    assert "tree" in models  # uniform, as --sampler random promises


def _bundle(y_train: list, y_val: list, meta: dict) -> DataBundle:
    x = torch.zeros(len(y_train), 1)
    yt, yv = torch.tensor(y_train), torch.tensor(y_val)
    return DataBundle(x, yt, torch.zeros(len(y_val), 1), yv, torch.zeros(0, 1), yv[:0], meta)


def test_chance_score_is_the_constant_predictions_metric() -> None:
    task = get_task("tabular")
    task.choose_metric(None, None)
    clf = _bundle([0, 0, 0, 1, 2, 2], [0, 1, 2, 2, 0, 0, 0, 1], {"num_classes": 3, "classes": ["a", "b", "c"]})
    task.bind(clf)
    assert task.chance_score(clf) == pytest.approx(4 / 8)  # class 0, the training majority, on validation
    task = get_task("tabular")
    task.choose_metric(None, None)
    reg = _bundle([1.0, 2.0, 3.0], [0.0, 4.0], {"problem": "regression"})
    task.bind(reg)
    assert task.chance_score(reg) == pytest.approx(np.sqrt((4 + 4) / 2))  # RMSE around the training mean 2


def test_record_chance_stores_it_once() -> None:
    silence_optuna()
    study = optuna.create_study(direction="maximize")
    task = get_task("tabular")
    task.choose_metric(None, None)
    clf = _bundle([0, 1, 1, 1], [1, 0], {"num_classes": 2, "classes": ["a", "b"]})
    task.bind(clf)
    record_chance(study, task, clf)
    assert study.user_attrs[CHANCE_ATTR] == pytest.approx(0.5)
    study.set_user_attr(CHANCE_ATTR, 0.25)
    record_chance(study, task, clf)
    assert study.user_attrs[CHANCE_ATTR] == 0.25


def test_a_raced_search_stores_the_chance_score_of_its_data(tmp_path: Path) -> None:
    from automl.data.bundle import DataConfig
    from automl.study import SearchSettings, run_search
    from tests.study._spaces import tiny_space

    # the built-in tabular space (seven families): one trial, the default HistGradientBoosting first
    run_search(SearchSettings(task="tabular", data="wine", trials=1, epochs=1, pruner="none", ensemble=False,
                              out=str(tmp_path / "runs"), device="cpu", study="c", seed=0))
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")
    task = get_task("tabular")
    task.choose_metric(None, None)
    cfg = DataConfig(source="wine", seed=0)
    task.prepare(cfg)
    bundle = task.load_data(cfg)
    task.bind(bundle)
    majority = np.bincount(bundle.y_train.numpy()).argmax()
    assert study.user_attrs[CHANCE_ATTR] == pytest.approx(float((bundle.y_val.numpy() == majority).mean()))
    # one family: nothing to race, and no scoring before the first trial (scikit-learn's metrics cost ~1 s)
    space = tmp_path / "s.yaml"
    space.write_text(tiny_space())
    run_search(SearchSettings(task="tabular", data="wine", space=str(space), trials=1, epochs=1, pruner="none",
                              out=str(tmp_path / "runs"), device="cpu", study="one", seed=0))
    one = optuna.load_study(study_name="one", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")
    assert CHANCE_ATTR not in one.user_attrs
