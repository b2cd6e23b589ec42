"""optuna-dashboard over a study storage, on loopback by default.

The dashboard's WSGI app runs under a threaded ``wsgiref`` server (what ``optuna-dashboard`` itself
uses without gunicorn), so tests can start it on a free port in a thread and stop it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from automl.exceptions import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection must not keep the process alive
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """No access log: the dashboard polls its API every few seconds."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@dataclass
class Dashboard:
    """A bound (not yet serving) dashboard server; ``serve_forever`` blocks, ``close`` stops it."""

    server: WSGIServer
    storage: str
    studies: list[str]
    study_ids: dict[str, int] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/dashboard"

    def study_url(self, name: str) -> str:
        """The dashboard page of one study."""
        return f"{self.url}/studies/{self.study_ids[name]}" if name in self.study_ids else self.url

    def serve_forever(self) -> None:
        """Serve until ``close`` is called from another thread (or KeyboardInterrupt)."""
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> Dashboard:
        """Serve in a daemon thread (for tests and notebooks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="automl-dashboard", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()

    def to_json(self) -> dict[str, object]:
        from automl.study.storage import redact

        return {"url": self.url, "host": self.host, "port": self.port, "storage": redact(self.storage),
                "studies": {name: self.study_url(name) for name in self.studies}}


def make_dashboard(
    storage: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, out_dir: str | Path = "runs",
    study: str | None = None,
) -> Dashboard:
    """Bind optuna-dashboard to ``host:port`` over an existing storage (port 0 picks a free one).

    The storage must hold at least one study (and ``study``, when given): a dashboard over an empty
    or mistyped database would show nothing and hide the mistake.
    """
    from optuna_dashboard import wsgi

    from automl.study.storage import open_storage, silence_optuna, study_names
    from automl.study.trials import existing_storage_url, pick_study

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    silence_optuna()
    url = existing_storage_url(storage, out_dir, study)
    backend = open_storage(url)
    names = study_names(backend)
    pick_study(names, study, url, need_one=False)
    ids = {name: backend.get_study_id_from_name(name) for name in names}
    from automl.tracking import artifact_store_dir

    store = artifact_store_dir(out_dir)  # best.pt and best.onnx of best trials (automl.tracking.optuna_artifacts)
    if store.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        app = wsgi(backend, artifact_store=FileSystemArtifactStore(str(store)))
    else:
        app = wsgi(backend)
    try:
        server = _ThreadedWSGIServer((host, port), _QuietHandler)
    except OSError as exc:
        why = "in use" if exc.errno in (98, 48, 10048) else (exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port}: {why} (pick another --port)") from None
    server.set_app(app)
    return Dashboard(server=server, storage=url, studies=list(ids), study_ids=ids)

