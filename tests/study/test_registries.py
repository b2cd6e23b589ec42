"""Every sampler and every trial pruner in the registries runs a 3-trial search (generated from the
dicts: a new entry is tested without a new test), and every sampler proposes valid points past its
random start-up trials."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from automl.study import SAMPLERS, TRIAL_PRUNERS, SearchSettings, list_samplers, list_trial_pruners, run_search

# Small wine MLPs: a numeric, a log-scale, an int and a categorical parameter, so every sampler
# meets every kind of distribution (cmaes hands the categorical one to its independent sampler).
SPACE = """\
params:
  depth: {type: int, low: 1, high: 2}
  width: {type: categorical, choices: [8, 16]}
  dropout: {type: float, low: 0.0, high: 0.2, step: 0.1}
  lr: {type: float, low: 3.0e-3, high: 3.0e-2, log: true}
  batch_size: {type: fixed, value: 32}
  optimizer: {type: fixed, value: adamw}
"""


def _search(tmp_path: Path, **kw: object) -> object:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    # ensemble=False: the best trial's sampled parameters are read below (an ensemble has its members')
    return run_search(SearchSettings(task="tabular", data="wine", space=str(space), trials=3, epochs=3,
                                     out=str(tmp_path / "runs"), device="cpu", ensemble=False, **kw))


def test_cli_help_lists_the_registries() -> None:
    import typer

    import cli

    search = typer.main.get_command(cli.app).commands["search"]
    helps = {p.name: p.help for p in search.params}
    assert helps["sampler"] == "Optuna sampler: " + " | ".join(list_samplers()) + "."
    assert helps["pruner"].endswith(": " + " | ".join(list_trial_pruners()) + ".")


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_a_search(tmp_path: Path, sampler: str) -> None:
    result = _search(tmp_path, sampler=sampler, pruner="none")
    assert result.counts == {"complete": 3, "pruned": 0, "failed": 0, "running": 0, "total": 3}
    assert result.test_metric > 0.5  # wine has three classes: a trained MLP beats a guess by far
    assert 3e-3 <= result.params["lr"] <= 3e-2 and result.params["width"] in (8, 16)


@pytest.mark.parametrize("pruner", list(TRIAL_PRUNERS))
def test_every_trial_pruner_runs_a_search(tmp_path: Path, pruner: str) -> None:
    result = _search(tmp_path, sampler="random", pruner=pruner)
    c = result.counts
    assert c["total"] == 3 and c["complete"] + c["pruned"] == 3 and c["complete"] >= 1
    assert result.test_metric > 0.5


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_proposes_valid_points_after_its_start_up(sampler: str) -> None:
    """Eight trials on a cheap function, past the five random start-up trials of the model-based
    samplers: every point lies in the space and the best beats the first start-up trial's value."""
    import optuna

    from automl.search.space import parse_space, sample
    from automl.study._samplers import make_sampler
    from automl.study.storage import silence_optuna

    silence_optuna()
    space = parse_space(yaml.safe_load(SPACE), "<test>")
    study = optuna.create_study(sampler=make_sampler(sampler, 0, space))

    def bowl(trial: optuna.Trial) -> float:
        p = sample(trial, space)
        assert 1 <= p["depth"] <= 2 and p["width"] in (8, 16) and 3e-3 <= p["lr"] <= 3e-2
        return (math.log10(p["lr"]) + 2) ** 2 + (p["depth"] - 2) ** 2 + p["dropout"]

    study.optimize(bowl, n_trials=8)
    assert len(study.trials) == 8 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.best_value <= study.trials[0].value
