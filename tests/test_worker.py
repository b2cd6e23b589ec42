"""Scale-out building blocks without a database server: bad input of `automl worker` / `search --jobs`,
dead-worker clean-up (heartbeats and dead local processes), Ctrl-C handling, trial splitting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run the console entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["automl", *args])
    monkeypatch.setitem(cli._state, "verbose", False)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plain_study(tmp_path: Path, name: str = "plain") -> str:
    """A SQLite storage holding one study that automl did not create; returns its URL."""
    import optuna

    from automl.study import silence_optuna

    silence_optuna()  # Optuna's INFO line would land on the captured stderr
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    optuna.create_study(storage=url, study_name=name)
    return url


# --- bad input: one line on stderr, exit code 1 ---------------------------------------------------


def test_worker_unknown_scheme(capsys, monkeypatch):
    code, out, err = run_cli(["worker", "--storage", "redis2://host/0", "--study", "s"], capsys, monkeypatch)
    assert code == 1
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and "unknown scheme 'redis2'" in lines[0]


def test_worker_unreachable_database(capsys, monkeypatch):
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/db"  # nothing listens there
    code, out, err = run_cli(["worker", "--storage", url, "--study", "s"], capsys, monkeypatch)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1
    assert "cannot open storage" in lines[0] and "refused" in lines[0]
    assert "secret" not in err  # the password is redacted


def test_search_unreachable_database(capsys, monkeypatch):
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/db"
    code, _, err = run_cli(["search", "--storage", url, "--trials", "1"], capsys, monkeypatch)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and "cannot open storage" in lines[0] and "secret" not in err


def test_worker_missing_study_lists_known(tmp_path, capsys, monkeypatch):
    url = make_plain_study(tmp_path, "alpha")
    code, _, err = run_cli(["worker", "--storage", url, "--study", "nope"], capsys, monkeypatch)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1
    assert "no study 'nope'" in lines[0] and "known studies: alpha" in lines[0]


def test_worker_study_without_automl_config(tmp_path, capsys, monkeypatch):
    url = make_plain_study(tmp_path, "alpha")
    code, _, err = run_cli(["worker", "--storage", url, "--study", "alpha"], capsys, monkeypatch)
    assert code == 1
    assert "has no automl search configuration" in err


def test_search_jobs_on_explicit_sqlite_is_refused(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, _, err = run_cli(["search", "--jobs", "2", "--storage", url, "--trials", "2"], capsys, monkeypatch)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and "one writer at a time" in lines[0] and "journal" in lines[0]


def test_bad_jobs_value(capsys, monkeypatch):
    code, _, err = run_cli(["search", "--jobs", "0"], capsys, monkeypatch)
    assert code == 1 and "--jobs must be >= 1" in err


# --- storage selection ----------------------------------------------------------------------------


def test_jobs_on_default_storage_switches_to_journal(tmp_path):
    from automl.study import SearchSettings, storage_for

    url, note = storage_for(SearchSettings(jobs=2, out=str(tmp_path)), tmp_path)
    assert url == str((tmp_path / "journal.log").resolve())
    assert note is not None and "journal" in note and "--storage" in note
    url1, note1 = storage_for(SearchSettings(jobs=1, out=str(tmp_path)), tmp_path)
    assert url1.startswith("sqlite:///") and note1 is None
    pg = "postgresql://u:p@db.example/x"
    assert storage_for(SearchSettings(jobs=4, storage=pg, out=str(tmp_path)), tmp_path) == (pg, None)


def test_with_driver_names_an_installed_driver():
    from automl.study import with_driver

    assert with_driver("postgresql://u:p@h/db") in ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg://u:p@h/db")
    assert with_driver("postgres://u:p@h/db").startswith("postgresql+")
    assert with_driver("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"


def test_split_trials():
    from automl.workers import split_trials

    assert split_trials(7, 3) == [3, 2, 2]
    assert sum(split_trials(20, 6)) == 20
    assert split_trials(None, 2) == [None, None]


# --- dead workers ---------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_trial_of_dead_local_process_is_failed_and_retried_once(tmp_path):
    import optuna
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from automl.workers import is_retry, sweep_dead_local, worker_id

    study = optuna.create_study(storage=optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("worker", worker_id(_dead_pid()))
    alive = study.ask()
    alive.set_user_attr("worker", worker_id())  # this process: must not be touched

    assert sweep_dead_local(study) == [trial.number]
    assert sweep_dead_local(study) == []  # once only
    dead = study.trials[trial.number]
    assert dead.state == TrialState.FAIL
    assert "no longer running" in dead.user_attrs["fail_reason"]
    assert study.trials[alive.number].state == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and is_retry(waiting[0])
    assert waiting[0].user_attrs["retry_of"] == trial.number
    assert "fail_reason" not in waiting[0].user_attrs and "worker" not in waiting[0].user_attrs
    # The retry asks for the same parameter values.
    retry = study.ask()
    assert retry.number == waiting[0].number
    assert retry.suggest_float("x", 0, 1) == dead.params["x"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_stale_heartbeat_fails_trial_with_reason(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from automl.study import open_storage
    from automl.workers import sweep_stale

    storage = open_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.set_user_attr("worker", "elsewhere:1")
    storage.record_heartbeat(trial._trial_id)  # what the worker's heartbeat thread does, then it dies
    assert sweep_stale(study) == []  # still within the grace period
    time.sleep(2.2)
    assert sweep_stale(study) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert "heartbeats" in failed.user_attrs["fail_reason"] and "elsewhere:1" in failed.user_attrs["fail_reason"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [trial.number]
    # A retry that dies too is not retried again (max_retry=1).
    retry = study.ask()
    storage.record_heartbeat(retry._trial_id)
    time.sleep(2.2)
    assert sweep_stale(study) == [retry.number]
    assert study.get_trials(states=(TrialState.WAITING,)) == []


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_interrupt_guard_defers_outside_training():
    from automl.workers import InterruptGuard

    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)  # between trials: only a flag
        assert guard.requested
        with pytest.raises(KeyboardInterrupt), guard.training():  # a trial must not start training
            pass
    with InterruptGuard() as guard, pytest.raises(KeyboardInterrupt), guard.training():
        with guard.critical():
            os.kill(os.getpid(), signal.SIGINT)  # inside a storage write: deferred ...
            time.sleep(0.05)
            reached = True
        pytest.fail("the interrupt should be raised when the storage write ends")
    assert reached
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_worker_missing_journal_file(tmp_path, capsys, monkeypatch):
    path = tmp_path / "nothing.log"
    code, _, err = run_cli(["worker", "--storage", str(path), "--study", "s"], capsys, monkeypatch)
    assert code == 1
    assert "does not exist" in err
    assert not path.exists()  # the check creates nothing
