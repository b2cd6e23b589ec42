"""Options of ``automl serve`` (``ServeSettings``), checked once by ``validate``.

Their own module so that the app (``automl.serve.app``) and the server (``automl.serve.server``)
both import them from below instead of from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automl.exceptions import ConfigError

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
