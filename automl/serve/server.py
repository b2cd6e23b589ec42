"""Run the app with uvicorn: settings, binding the socket, graceful shutdown.

The socket is bound before uvicorn starts, so a busy port is an ordinary ConfigError (uvicorn would
exit the process itself) and ``--port 0`` gets a free port that the caller can print. uvicorn
handles SIGINT / SIGTERM: it stops accepting connections, lets requests in flight finish (up to
``graceful_timeout`` seconds), then the app's lifespan stops the micro-batcher. Each connection's
header time, header size and body time are bounded by :mod:`automl.serve.protocol`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

from automl.exceptions import ConfigError
from automl.runtime.inference import OnnxModel
from automl.serve._memory import tune_malloc
from automl.serve.settings import ServeSettings

if TYPE_CHECKING:
    import uvicorn

__all__ = ["ServeSettings", "bind_socket", "load_model", "serve", "server_summary", "url_of"]


def load_model(settings: ServeSettings) -> OnnxModel:
    """The ONNX model with serving session options (an ArtifactError for a bad file)."""
    from automl.data.bundle import InputLimits

    limits = InputLimits(max_image_pixels=settings.max_image_pixels, max_text_chars=settings.max_text_chars)
    return OnnxModel(settings.model, threads=settings.threads, spinning=settings.spinning,
                     max_samples=settings.max_samples, limits=limits)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port``; a ConfigError when that is impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on such sockets, and without it
    # Nagle's algorithm meets delayed ACKs and every response waits ~40 ms.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        reason = "already in use" if exc.errno in (48, 98) else exc.strerror
        raise ConfigError(f"cannot listen on {host}:{port}: {reason} (choose another --port)") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, except that a SIGINT / SIGTERM that already shut it down cleanly is not
        raised again afterwards (uvicorn re-raises it, which would make Ctrl-C look like a crash)."""

        stopped_by: list[int] = []  # replaced per instance by capture_signals

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    captured = getattr(self, "_captured_signals", [])
                    self.stopped_by = list(captured)
                    captured.clear()

    return GracefulServer


def serve(settings: ServeSettings, model: OnnxModel | None = None, sock: socket.socket | None = None) -> str | None:
    """Serve until SIGINT / SIGTERM; returns the name of the signal that stopped it, after a clean
    shutdown (requests in flight answered, the batcher drained)."""
    import signal

    import uvicorn

    from automl.serve.app import create_app
    from automl.serve.protocol import ConnectionLimits, limited_protocol

    settings.validate()
    tune_malloc()
    model = model or load_model(settings)
    sock = sock or bind_socket(settings.host, settings.port)
    app = create_app(model, settings)
    metrics = app.state.metrics

    def refused(status: int, code: str) -> None:  # answers the protocol gives before the app sees a request
        metrics.observe_error(code)
        metrics.observe_request("other", status, 0.0)

    limits = ConnectionLimits(header_timeout=settings.header_timeout, max_header_bytes=settings.max_header_bytes,
                              body_timeout=settings.body_timeout)
    config = uvicorn.Config(
        app, log_level=settings.log_level, access_log=settings.access_log, lifespan="on",
        timeout_graceful_shutdown=settings.graceful_timeout, backlog=2048, server_header=False,
        timeout_keep_alive=30, http=limited_protocol(limits, refused),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # were uvicorn's h11 parser ever chosen
    )
    server = _server_class()(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return signal.Signals(server.stopped_by[0]).name if server.stopped_by else None


def server_summary(model: OnnxModel, settings: ServeSettings, url: str) -> dict[str, str | int | float | bool]:
    """What the CLI prints when the server starts."""
    return {"url": url, "model": str(model.path), "task": model.task, "variant": model.meta.get("variant", ""),
            "classes": len(model.classes), "provider": model.provider, "sha256": model.sha256,
            "max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
            "api_key": settings.api_key is not None}
