"""A resumed study and several processes on one study never propose a configuration twice: the
sampler's stream of trial n is seeded from (seed, n), not restarted in every process (issue 22)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from automl.search.space import parse_space, sample
from automl.study import SearchSettings, WorkerSettings, run_search, run_worker, silence_optuna
from automl.study._samplers import make_sampler, trial_seed
from tests.study._spaces import tiny_space

# a float, an int and a categorical parameter: two proposals are equal only when drawn from one stream
SPACE = parse_space(yaml.safe_load("""\
params:
  depth: {type: int, low: 1, high: 4}
  width: {type: categorical, choices: [8, 16, 32]}
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
"""), "<test>")
SAMPLERS = ["tpe", "random", "cmaes", "gp", "nsga2"]  # grid enumerates: it never repeats by design


def _distinct(configs: list[tuple], sampler: str) -> int:
    """How many of the first configurations must be distinct: all 20, but for NSGA-II its random first
    generation only (its children copy their parents' genes: it repeats itself in one process too)."""
    return len(set(configs[:5])) if sampler == "nsga2" else len(set(configs))


def _bowl(trial: optuna.Trial) -> float:
    p = sample(trial, SPACE)
    return (p["lr"] - 0.01) ** 2 + p["depth"] / 10 + p["width"] / 100


def _configs(study: optuna.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


def _process(storage: optuna.storages.BaseStorage, sampler: str, seed: int = 0) -> optuna.Study:
    """The study as a new process opens it: a sampler built afresh with the same seed."""
    return optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(sampler, seed, SPACE))


def _storage() -> optuna.storages.BaseStorage:
    silence_optuna()
    storage = optuna.storages.InMemoryStorage()  # shared by the "processes" below, like a database
    optuna.create_study(study_name="s", storage=storage)
    return storage


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_resumed_study_proposes_new_configurations(sampler: str) -> None:
    storage = _storage()
    _process(storage, sampler).optimize(_bowl, n_trials=3)  # then killed
    study = _process(storage, sampler)  # the same command again
    study.optimize(_bowl, n_trials=17)
    configs = _configs(study)
    assert len(configs) == 20 and _distinct(configs, sampler) == (5 if sampler == "nsga2" else 20)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "nsga2"])
def test_two_workers_with_one_seed_propose_new_configurations(sampler: str) -> None:
    storage = _storage()
    workers = [_process(storage, sampler), _process(storage, sampler)]
    for i in range(20):  # interleaved, as two processes take turns on the storage
        workers[i % 2].optimize(_bowl, n_trials=1)
    configs = _configs(workers[0])
    assert len(configs) == 20 and _distinct(configs, sampler) == (5 if sampler == "nsga2" else 20)


def test_a_fresh_study_is_reproducible_from_its_seed() -> None:
    silence_optuna()
    runs = []
    for seed in (0, 0, 1):
        study = optuna.create_study(sampler=make_sampler("tpe", seed, SPACE))
        study.optimize(_bowl, n_trials=8)
        runs.append(_configs(study))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert trial_seed(0, 1) != trial_seed(1, 0) and 0 <= trial_seed(2**31, 10**6) < 2**32


def test_search_resume_and_two_workers_never_repeat(tmp_path: Path) -> None:
    """End to end on digits-sized work (wine, 1 epoch): 3 trials, the same command again (a resume),
    then two ``automl worker`` runs with the same --seed: 20 trials, 20 learning rates."""
    space = tmp_path / "s.yaml"
    space.write_text(tiny_space())
    settings = SearchSettings(task="tabular", data="wine", space=str(space), trials=3, epochs=1, pruner="none",
                              out=str(tmp_path / "runs"), device="cpu", study="r", seed=0)
    run_search(settings)
    run_search(SearchSettings(**{**settings.__dict__, "trials": 7}))
    url = f"sqlite:///{tmp_path / 'runs' / 'automl.db'}"
    for _ in range(2):
        run_worker(WorkerSettings(storage=url, study="r", trials=5, out=str(tmp_path / "runs"), device="cpu", seed=0))
    study = optuna.load_study(study_name="r", storage=url)
    lrs = [t.params["lr"] for t in study.trials]
    assert len(lrs) == 20 and len(set(lrs)) == 20


def test_the_grid_visits_every_point_once_across_processes() -> None:
    """The grid sampler is not rebuilt per trial: Optuna gives trial n the n-th point of a grid shuffled
    once from the seed, and a sampler reseeded per trial reshuffled it (trials repeated points)."""
    storage = _storage()
    workers = [_process(storage, "grid"), _process(storage, "grid")]  # resumed / a second worker
    for i in range(36):  # depth 1..4 x width 8, 16, 32 x 3 learning rates: 36 points
        workers[i % 2].optimize(_bowl, n_trials=1)
    assert len(workers[0].trials) == 36 and len(set(_configs(workers[0]))) == 36
