"""--timeout is a deadline (issue 11 item 13): a trial still training then is pruned with the reason,
and the search returns within the budget plus a small margin."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from automl.exceptions import TrainingError
from automl.study import SearchSettings, run_search
from tests.study._spaces import tiny_space

TINY_SPACE = tiny_space()
MARGIN_S = 2.5  # what follows the deadline: recording the pruned trial, refreshing best.json


def _settings(tmp_path: Path, **kw: object) -> SearchSettings:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    return SearchSettings(task="image", data="digits", space=str(space), pruner="none", out=str(tmp_path / "runs"),
                          study="d", device="cpu", **kw)


def _pruned(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="d", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")
    return [t for t in study.trials if t.state.name == "PRUNED"]


def test_a_long_trial_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    first = run_search(_settings(tmp_path, trials=1, epochs=2))
    timeout = 5.0
    start = time.monotonic()
    # 500 epochs would take minutes; the deadline stops the trial within the budget.
    result = run_search(_settings(tmp_path, trials=None, epochs=500, timeout=timeout))
    elapsed = time.monotonic() - start
    assert elapsed <= timeout + MARGIN_S, elapsed
    assert result.best_trial == first.best_trial and result.counts["total"] == 2
    (stopped,) = _pruned(tmp_path)
    assert stopped.user_attrs["prune_reason"].startswith("deadline: --timeout reached after ")
    assert stopped.user_attrs["pruned_at_epoch"] < 500


def test_no_trial_done_by_the_deadline_is_one_error(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(TrainingError, match="no trial of study 'd' completed"):
        run_search(_settings(tmp_path, trials=3, epochs=500, timeout=3.0))
    assert time.monotonic() - start <= 3.0 + MARGIN_S
    assert [t.user_attrs["prune_reason"][:9] for t in _pruned(tmp_path)] == ["deadline:"]
