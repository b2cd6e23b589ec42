"""``search --jobs 2``: each worker's log holds its progress (it was 0 bytes), and the parent says
when each worker starts and where its log is (issue 23.9, issue 24.7). Two real worker processes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


@pytest.mark.slow
def test_jobs_workers_write_their_logs_and_the_parent_says_they_started(tmp_path: Path) -> None:
    from automl.study import SearchSettings, run_search
    from automl.ui.plain import PlainSearchObserver

    stream = io.StringIO()
    observer = PlainSearchObserver(total=2, stream=stream)
    result = run_search(SearchSettings(task="image", data="digits", trials=2, epochs=1, jobs=2, pruner="none",
                                       out=str(tmp_path), study="j", device="cpu", seed=0), observer=observer)
    assert result.counts["complete"] == 2
    text = stream.getvalue()
    logs = sorted((tmp_path / "j" / "workers").glob("worker-*.log"))
    assert [p.name for p in logs] == ["worker-0.log", "worker-1.log"]
    for i, log in enumerate(logs):
        assert f"worker {i} started (pid " in text and str(log) in text, text
        body = log.read_text()
        assert "on study 'j'" in body and "trial " in body and " started (" in body, body
        assert " complete" in body and "epoch 1/1" in body, body


def test_a_jobs_child_writes_its_progress_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a ``--jobs`` child writes to stderr is its log file: the trials it ran, as plain lines."""
    import json

    from automl.study import SearchSettings, run_search
    from automl.ui.worker_child import child_main

    first = run_search(SearchSettings(task="image", data="digits", trials=1, epochs=1, pruner="none",
                                      out=str(tmp_path), study="c", device="cpu", seed=0))
    capsys.readouterr()
    args = {"storage": first.storage, "study": "c", "trials": 1, "out": str(tmp_path), "device": "cpu", "seed": 7}
    assert child_main(json.dumps(args)) == 0
    err = capsys.readouterr().err
    assert "on study 'c' (cpu)" in err and "trial 1 started (1/1)" in err, err
    assert "trial 1 epoch 1/1: val " in err and "trial 1 complete" in err, err
