"""A space's ``firsts`` are the first trials of a new study, in order; a resumed study samples."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from automl.study import SearchSettings, run_search
from tests.study._spaces import tiny_space


def test_firsts_are_enqueued_in_order_then_the_sampler_takes_over(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(tiny_space() + "firsts:\n  - {lr: 0.02, depth: 1}\n  - {lr: 0.04}\n")
    settings = SearchSettings(task="tabular", data="wine", space=str(space), trials=3, epochs=1, pruner="none",
                              out=str(tmp_path / "runs"), device="cpu", study="f", seed=3)
    run_search(settings)
    study = optuna.load_study(study_name="f", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")
    lrs = [t.params["lr"] for t in study.trials]
    assert lrs[:2] == [pytest.approx(0.02), pytest.approx(0.04)]
    assert [bool(t.system_attrs.get("fixed_params")) for t in study.trials] == [True, True, False]
    assert lrs[2] not in (0.02, 0.04)
    run_search(SearchSettings(**{**settings.__dict__, "trials": 1}))  # resumed: no firsts again
    assert len(study.trials) == 4 and not study.trials[3].system_attrs.get("fixed_params")


def test_firsts_are_queued_once_per_study_whichever_process_opens_it() -> None:
    from automl.study._samplers import enqueue_firsts

    firsts = [{"lr": 0.02}, {"lr": 0.04}]
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    assert enqueue_firsts(study, firsts[:1]) == 1  # a process killed after queueing the first one
    assert enqueue_firsts(study, firsts) == 1  # the next process queues only the missing one
    assert enqueue_firsts(study, firsts) == 0  # and a third none: both are waiting already
    assert [t.system_attrs["fixed_params"] for t in study.trials] == firsts
    study.optimize(lambda t: t.suggest_float("lr", 0.01, 0.05), n_trials=3)  # the firsts, then one sampled
    assert enqueue_firsts(study, [{"lr": 0.03}]) == 0  # the sampler has started: past the firsts


def test_a_search_killed_while_queueing_its_firsts_runs_each_once(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(tiny_space() + "firsts:\n  - {lr: 0.02}\n  - {lr: 0.04}\n")
    url = f"sqlite:///{tmp_path / 'runs' / 'automl.db'}"
    (tmp_path / "runs").mkdir()
    optuna.create_study(study_name="k", storage=url).enqueue_trial({"lr": 0.02})  # then killed
    settings = SearchSettings(task="tabular", data="wine", space=str(space), trials=3, epochs=1, pruner="none",
                              out=str(tmp_path / "runs"), device="cpu", study="k", seed=3)
    run_search(settings)
    lrs = [t.params["lr"] for t in optuna.load_study(study_name="k", storage=url).trials]
    assert lrs[:2] == [pytest.approx(0.02), pytest.approx(0.04)] and len(lrs) == 3 and lrs[2] not in (0.02, 0.04)
