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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError
from automl.runtime.inference import OnnxModel
from automl.serve._memory import tune_malloc

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Options of ``automl serve``, checked once by ``validate``."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    batch_wait_ms: float = 2.0
    api_key: str | None = None
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = one per physical core
    spinning: bool = False  # ORT pool threads busy-wait between runs; off leaves the CPU to the HTTP loop
    max_body_bytes: int = 16 * MiB
    max_samples: int = 256  # samples in one request
    max_queue: int = 4096  # samples waiting for the model before 503
    graceful_timeout: float = 30.0  # seconds requests in flight get at shutdown
    max_image_pixels: int | None = None  # pixels of one uploaded image; None = the image task's default
    max_text_chars: int | None = None  # characters of one text; None = the text task's default
    header_timeout: float = 10.0  # seconds a client has to send a request's headers
    max_header_bytes: int = 64 * 1024  # request line + headers; more gets 431 and the connection closed
    body_timeout: float = 60.0  # seconds a request's body may take to arrive after its headers; then 408
    access_log: bool = False
    log_level: str = "info"

    def validate(self) -> ServeSettings:
        if not self.model.endswith(".onnx"):
            hint = " (export it first: automl compress BEST_PT)" if self.model.endswith(".pt") else ""
            raise ConfigError(f"{self.model}: serve takes an .onnx file{hint}")
        if not Path(self.model).is_file():
            raise ConfigError(f"{self.model}: no such file")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in [0, 65535], got {self.port}")
        if not 1 <= self.max_batch <= 65536:
            raise ConfigError(f"--max-batch must be in [1, 65536], got {self.max_batch}")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise ConfigError(f"--batch-wait-ms must be in [0, 10000], got {self.batch_wait_ms}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {self.threads}")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"--max-body-mb must allow at least 1 KiB, got {self.max_body_bytes} bytes")
        if self.max_samples < 1:
            raise ConfigError(f"--max-samples must be >= 1, got {self.max_samples}")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise ConfigError(f"--max-image-pixels must be >= 1, got {self.max_image_pixels}")
        if self.max_text_chars is not None and self.max_text_chars < 1:
            raise ConfigError(f"--max-text-chars must be >= 1, got {self.max_text_chars}")
        if not 0.1 <= self.header_timeout <= 3600:
            raise ConfigError(f"--header-timeout must be in [0.1, 3600] seconds, got {self.header_timeout}")
        if not 1024 <= self.max_header_bytes <= 16 * MiB:
            raise ConfigError(f"--max-header-kb must be in [1, 16384], got {self.max_header_bytes / 1024:g}")
        if not 0.1 <= self.body_timeout <= 86400:
            raise ConfigError(f"--body-timeout must be in [0.1, 86400] seconds, got {self.body_timeout}")
        if self.api_key is not None and (not self.api_key.strip() or any(c.isspace() for c in self.api_key)):
            raise ConfigError("--api-key must be a non-empty string without spaces")
        return self


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


def _server_class() -> Any:
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


def server_summary(model: OnnxModel, settings: ServeSettings, url: str) -> dict[str, Any]:
    """What the CLI prints when the server starts."""
    return {"url": url, "model": str(model.path), "task": model.task, "variant": model.meta.get("variant", ""),
            "classes": len(model.classes), "provider": model.provider, "sha256": model.sha256,
            "max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
            "api_key": settings.api_key is not None}
