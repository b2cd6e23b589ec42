"""The objective's failure handling: NaN loss prunes with a reason, CUDA out-of-memory fails that trial
and the study goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from automl.exceptions import NonFiniteLossError
from automl.search import objective
from automl.study import SearchSettings, run_search


def _flaky_fit(exc: BaseException, fail_on: set[int]) -> Any:
    real = objective.fit
    calls = {"n": 0}

    def fit(*args: Any, **kwargs: Any) -> Any:
        n = calls["n"]
        calls["n"] += 1
        if n in fail_on:
            raise exc
        return real(*args, **kwargs)

    return fit


def _trials(tmp_path: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / 'automl.db'}").trials


def test_out_of_memory_fails_the_trial_and_the_study_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objective, "fit", _flaky_fit(torch.OutOfMemoryError("CUDA out of memory"), {1}))
    res = run_search(SearchSettings(trials=3, epochs=1, pruner="none", out=str(tmp_path), study="oom", device="cpu"))
    assert (res.counts["complete"], res.counts["failed"]) == (2, 1)
    failed = [t for t in _trials(tmp_path, "oom") if t.state == optuna.trial.TrialState.FAIL]
    assert failed[0].number == 1
    assert failed[0].user_attrs["fail_reason"].startswith("out of memory on cpu (batch_size=")


def test_nan_loss_prunes_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objective, "fit", _flaky_fit(NonFiniteLossError(2), {0}))
    res = run_search(SearchSettings(trials=2, epochs=1, pruner="none", out=str(tmp_path), study="nan", device="cpu"))
    assert (res.counts["complete"], res.counts["pruned"]) == (1, 1)
    pruned = _trials(tmp_path, "nan")[0]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert pruned.user_attrs["prune_reason"] == "loss became NaN/inf in epoch 2"
    assert pruned.user_attrs["pruned_at_epoch"] == 2
    assert res.best_trial == 1
