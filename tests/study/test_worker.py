"""`automl worker` and `search --jobs` on bad input: one line on stderr, exit code 1, nothing created."""

from __future__ import annotations

import socket
import sys
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


def test_worker_missing_journal_file(tmp_path, capsys, monkeypatch):
    path = tmp_path / "nothing.log"
    code, _, err = run_cli(["worker", "--storage", str(path), "--study", "s"], capsys, monkeypatch)
    assert code == 1
    assert "does not exist" in err
    assert not path.exists()  # the check creates nothing
