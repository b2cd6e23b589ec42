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
