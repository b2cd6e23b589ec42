"""A task whose models' outputs cannot be averaged says so, and the search then builds no ensemble."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from automl.study._ensemble import write_ensemble
from automl.tasks import get_task


def test_the_anomaly_task_gets_no_ensemble_and_nothing_is_touched(tmp_path: Path) -> None:
    task = get_task("anomaly")
    assert task.ensemble_unsupported and "scales" in task.ensemble_unsupported
    run = SimpleNamespace(task=task, run_dir=tmp_path / "missing")  # any other attribute read would fail
    best = object()
    assert write_ensemble(run, best, retrain=False) == (best, None)  # type: ignore[arg-type]
    assert not (tmp_path / "missing").exists()  # not even the lock file
    assert get_task("tabular").ensemble_unsupported is None
