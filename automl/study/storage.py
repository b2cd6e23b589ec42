"""Study storages: resolve what ``--storage`` names, open it, find studies in it, say it safely.

URLs are parsed with ``sqlalchemy.engine.make_url`` (scheme, driver, database file, password
redaction); anything that is not a URL is a journal file (``*.log``) or a SQLite file (``*.db``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from automl.exceptions import ConfigError, StorageError

if TYPE_CHECKING:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection

SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JOURNAL_SUFFIXES = (".log", ".journal")
CONNECT_TIMEOUT_S = 10  # an unreachable database server fails fast
CREATE_ATTEMPTS = 4  # schema creation that lost a race with another process is retried this often


def parse_url(url: str) -> URL | None:
    """The SQLAlchemy URL object of a database URL; None for a journal file path."""
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(f"storage {redact(url)}: not a valid database URL") from None


def backend_name(url: str) -> str | None:
    """``sqlite``, ``postgresql``, ``mysql``, … for a database URL; None for a journal file path."""
    u = parse_url(url)
    return None if u is None else u.get_backend_name().lower()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL (None for other URLs and in-memory databases)."""
    u = parse_url(url)
    if u is None or u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database)


def resolve_storage(storage: str | None, out: Path) -> str:
    """``None`` -> ``sqlite:///<out>/automl.db``; a plain path ending in .db -> SQLite; a path ending in
    .log -> a journal file; URLs as given (their scheme checked, a SQLite file's folder created)."""
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(out / 'automl.db').resolve()}"
    u = parse_url(storage)
    if u is None:
        if storage.endswith(SQLITE_SUFFIXES):
            Path(storage).parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{Path(storage).resolve()}"
        if storage.endswith(JOURNAL_SUFFIXES):
            return storage
        raise StorageError(
            f"storage {storage!r}: not a URL (use sqlite:///file.db, postgresql://user:pass@host/db, "
            f"mysql://…, or a journal file ending in .log)"
        )
    scheme = u.get_backend_name().lower()
    if scheme not in SCHEMES:
        raise StorageError(f"storage {redact(storage)}: unknown scheme '{scheme}' (use sqlite, postgresql or mysql)")
    db = sqlite_file(storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return storage


def redact(url: str) -> str:
    """``url`` with its password hidden (for messages and JSON); paths are returned as they are."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://…"  # unparseable: show nothing that might be a secret
    return url if u.password is None else u.render_as_string(hide_password=True)


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def with_driver(url: str) -> str:
    """Name an installed database driver in a URL that names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 and ``mysql://`` to mysqlclient; automl
    ships psycopg2-binary, and PyMySQL is the usual pure-Python MySQL driver. ``postgres://`` (the
    Heroku spelling) becomes ``postgresql://``.
    """
    u = parse_url(url)
    if u is None or "+" in u.drivername:
        return url
    backend = u.get_backend_name().lower()
    if backend in ("postgresql", "postgres"):
        driver = "psycopg" if _module_available("psycopg") else "psycopg2"
    elif backend == "mysql" and not _module_available("MySQLdb") and _module_available("pymysql"):
        driver = "pymysql"
    else:
        return url
    return u.set(drivername=f"{'postgresql' if backend == 'postgres' else backend}+{driver}").render_as_string(
        hide_password=False
    )


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a database driver's own message when SQLAlchemy wraps one)."""
    text = str(exc).strip()
    orig = getattr(exc, "orig", None)
    if orig is not None and str(orig).strip():
        text = str(orig).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]


def _lost_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is what a process sees when another creates the same schema at the same moment."""
    text = f"{exc} {getattr(exc, 'orig', '')}".lower()
    return any(s in text for s in ("unique constraint", "duplicate key", "already exists", "database is locked"))


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
    stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> BaseStorage:
    """An Optuna storage for a resolved URL (or journal file); StorageError with one line when it
    cannot be opened.

    With ``heartbeat_interval`` (seconds; database storages only) each running trial records a
    heartbeat; a trial silent for ``grace_period`` seconds is failed and handed to ``stale_callback``
    (``automl.study._reaper``). Creating the tables is safe when several processes open a fresh
    database at once: a file lock serialises it for SQLite, and a creation that lost the race to
    another process (any database) is retried.
    """
    import optuna

    if parse_url(url) is None:  # journal file: no heartbeats; dead local workers are found by pid
        try:
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except Exception as exc:
            raise StorageError(f"cannot open journal file {url}: {first_line(exc)}") from None
    backend = backend_name(url)
    engine_kwargs: dict[str, object] = {}
    if backend != "sqlite":
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    kwargs: dict[str, object] = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": stale_callback}
    db = sqlite_file(url)
    lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if db is not None:
        from filelock import FileLock

        lock = FileLock(db.with_name(f".{db.name}.lock"))
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with lock, warnings.catch_warnings():  # heartbeat_interval is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(with_driver(url), engine_kwargs=engine_kwargs or None, **kwargs)
                if db is not None:
                    _fast_sqlite(storage.engine)
                return storage
        except ImportError as exc:  # Optuna wraps the driver's ModuleNotFoundError
            raise StorageError(f"cannot open storage {redact(url)}: {_missing_driver(exc, backend)}") from None
        except Exception as exc:  # sqlalchemy OperationalError, IntegrityError, ArgumentError, …
            if attempt + 1 < CREATE_ATTEMPTS and _lost_creation_race(exc):
                time.sleep(0.2 * (attempt + 1))
                continue
            raise StorageError(f"cannot open storage {redact(url)}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


def _fast_sqlite(engine: Engine) -> None:
    """Every connection of ``engine`` to a SQLite file uses a write-ahead log with synchronous=NORMAL.

    A search commits about 30 times a trial (suggestions, reports, attributes); in SQLite's default
    mode each commit waits for several fsyncs. With the log, a commit appends to it without one: on a
    loaded 2-core machine Optuna's storage work for a 10-epoch trial took 165 ms instead of 366 ms
    (median of 6). A killed process loses nothing; an OS crash can lose the last commits, never the
    file's consistency. Connections the storage opened before this are closed, so each one gets it.
    """
    from sqlalchemy import event

    def on_connect(dbapi_conn: DBAPIConnection, _record: object) -> None:
        import sqlite3

        cur = dbapi_conn.cursor()
        try:
            # a locked or read-only database keeps its journal: slower, not wrong
            with contextlib.suppress(sqlite3.DatabaseError):
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def _missing_driver(exc: ImportError, backend: str) -> str:
    if backend == "mysql":
        return "a MySQL driver is not installed (pip install pymysql)"
    cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
    return f"{getattr(cause, 'name', None) or 'a database driver'} is not installed (pip install psycopg2-binary)"


def study_names(storage: BaseStorage) -> list[str]:
    """Names of the studies a storage holds."""
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def load_existing_study(storage: BaseStorage, url: str, name: str, sampler: BaseSampler | None = None,
                        pruner: BasePruner | None = None) -> optuna.Study:
    """``optuna.load_study``; a StorageError that lists the known names when ``name`` is not there."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        known = study_names(storage)
        raise StorageError(
            f"no study '{name}' in {redact(url)} (known studies: {', '.join(known) if known else 'none'})"
        ) from None
    except Exception as exc:
        raise StorageError(f"cannot load study '{name}' from {redact(url)}: {first_line(exc)}") from None


def storage_for(storage: str | None, jobs: int, out: Path) -> tuple[str, str | None]:
    """The storage URL of a search, and a note for the user when it differs from the one asked for.

    SQLite takes one writer at a time, so ``--jobs > 1`` on the default storage uses a journal file
    (``<out>/journal.log``) instead; an explicit SQLite URL with ``--jobs > 1`` is a ConfigError.
    """
    url = resolve_storage(storage, out)
    if jobs == 1 or backend_name(url) != "sqlite":
        return url, None
    if storage is not None:
        raise ConfigError(
            f"--jobs {jobs}: SQLite ({redact(url)}) takes one writer at a time; use a journal file "
            f"(--storage {out / 'journal.log'}) or a server (--storage postgresql://user:pass@host/db)"
        )
    journal = str((out / "journal.log").resolve())
    note = (
        f"--jobs {jobs}: SQLite takes one writer at a time, so this study is stored in the journal "
        f"file {journal}; pass --storage {journal} to resume it or to add workers"
    )
    return journal, note


def silence_optuna() -> None:
    """Keep Optuna's log and experimental warnings off the terminal: failed trials are recorded in
    their user attributes and shown by the CLI; Optuna's own warning (with a traceback for Ctrl-C)
    would only repeat it."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)


def counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "total": len(trials),
    }
