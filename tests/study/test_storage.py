"""Storage URLs (parsed by SQLAlchemy), the --jobs storage switch, and opening a fresh SQLite file
from several processes at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from automl.exceptions import StorageError
from automl.study.storage import redact, resolve_storage, sqlite_file, storage_for, with_driver

REPO = Path(__file__).resolve().parents[2]


def test_jobs_on_default_storage_switches_to_journal(tmp_path):
    url, note = storage_for(None, 2, tmp_path)
    assert url == str((tmp_path / "journal.log").resolve())
    assert note is not None and "journal" in note and "--storage" in note
    url1, note1 = storage_for(None, 1, tmp_path)
    assert url1.startswith("sqlite:///") and note1 is None
    pg = "postgresql://u:p@db.example/x"
    assert storage_for(pg, 4, tmp_path) == (pg, None)
    with pytest.raises(Exception, match="one writer at a time"):
        storage_for(f"sqlite:///{tmp_path / 'x.db'}", 2, tmp_path)


def test_with_driver_names_an_installed_driver():
    assert with_driver("postgresql://u:p@h/db") in ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg://u:p@h/db")
    assert with_driver("postgres://u:p@h/db").startswith("postgresql+")
    assert with_driver("postgres://u:p%40ss@h/db").endswith("://u:p%40ss@h/db")  # the password survives as given
    assert with_driver("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user:se:cret@host/db", "postgresql://user:***@host/db"),  # ':' in the password
        ("mysql+pymysql://u:pw@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("runs/journal.log", "runs/journal.log"),
    ],
)
def test_redact_hides_only_the_password(url, shown):
    assert redact(url) == shown
    assert "secret" not in redact(url) and "se:cr" not in redact(url)


def test_resolve_storage(tmp_path):
    assert resolve_storage(str(tmp_path / "a" / "s.db"), tmp_path) == f"sqlite:///{(tmp_path / 'a' / 's.db').resolve()}"
    assert (tmp_path / "a").is_dir()
    assert resolve_storage("sqlite:////abs/never/x.db".replace("/abs/never", str(tmp_path / "b")), tmp_path)
    assert (tmp_path / "b").is_dir()  # the SQLite file's folder is created
    assert sqlite_file(f"sqlite:///{tmp_path}/c.db") == tmp_path / "c.db"
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("postgresql://h/db") is None
    with pytest.raises(StorageError, match="unknown scheme 'redis2'"):
        resolve_storage("redis2://host/0", tmp_path)
    with pytest.raises(StorageError, match="not a URL"):
        resolve_storage("somewhere", tmp_path)
    for bad in ("postgresql://u:secret@h:abc/db", "postgresql://u:secret@[::1/db", "://x"):
        with pytest.raises(StorageError, match="not a valid database URL") as info:
            resolve_storage(bad, tmp_path)
        assert "secret" not in str(info.value)


_OPEN_AT = """\
import sys, time
import optuna  # imported before the start signal, so the processes reach the database together
from automl.study import open_storage
start = float(sys.argv[1])
for k, url in enumerate(sys.argv[2:]):  # one fresh file per round, the rounds 1.5 s apart
    time.sleep(max(0.0, start + 1.5 * k - time.time()))
    open_storage(url)
"""


def test_fresh_sqlite_opened_by_many_processes_at_once(tmp_path):
    """Issue 11 item 10: creating the schema of a fresh SQLite file raced (UNIQUE constraint failed:
    alembic_version.version_num, or "table … already exists") when processes started together."""
    # Three rounds of four processes (before the fix most rounds failed); the four processes import
    # optuna once and then open a fresh file together each round.
    urls = [f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}" for attempt in range(3)]
    start_at = time.time() + 6  # seconds: time for every process to import optuna first
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(start_at), *urls], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-600:] for e in errors if e)
