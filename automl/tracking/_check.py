"""``--mlflow`` and ``--tensorboard`` checked before any data is loaded: the extra is installed, the
URI or folder is usable."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from automl.exceptions import ConfigError

#: what to run when an extra is missing, by option
INSTALL = {
    "mlflow": "--mlflow needs MLflow, an optional extra: pip install 'automl[mlflow]'",
    "tensorboard": "--tensorboard needs TensorBoard, an optional extra: pip install 'automl[tensorboard]'",
}
MAX_URI_CHARS = 2000  # a tracking URI longer than this is a mistake (a pasted file, not an address)


def check_trackers(mlflow: str | None = None, tensorboard: str | None = None) -> None:
    """ConfigError (one line, how to install it) when an asked-for tracker's package is missing, or
    when the MLflow URI or the TensorBoard folder cannot be right. Imports MLflow (about a second)
    only when ``mlflow`` is given; nothing else is loaded."""
    if mlflow is not None:
        if not mlflow.strip() or len(mlflow) > MAX_URI_CHARS:
            raise ConfigError(f"--mlflow must be a tracking URI (file:DIR, sqlite:///FILE, http://HOST:PORT), "
                              f"got {mlflow[:80]!r}")
        try:
            import mlflow as _  # noqa: F401 - only whether it imports
        except ImportError:
            raise ConfigError(INSTALL["mlflow"]) from None
        allow_file_store(mlflow)
    if tensorboard is not None:
        if not tensorboard.strip():
            raise ConfigError("--tensorboard must name a folder for the event files")
        try:
            import tensorboard as _tb  # noqa: F401 - torch.utils.tensorboard needs it (not TensorFlow)
        except ImportError:
            raise ConfigError(INSTALL["tensorboard"]) from None
        if Path(tensorboard).exists() and not Path(tensorboard).is_dir():
            raise ConfigError(f"--tensorboard {tensorboard}: exists and is not a folder")


def is_file_store(uri: str) -> bool:
    """Whether ``uri`` is MLflow's file store (``file:DIR`` or a plain path)."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\\ on Windows


def allow_file_store(uri: str) -> None:
    """MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set (it recommends a
    database); a ``file:`` URI given on purpose is allowed in this process (a user's own setting wins)."""
    if is_file_store(uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def quiet_stdout() -> None:
    """MLflow writes "View run … at: URL" to stdout when a run on a server ends; stdout is the
    command's (``--json`` prints one JSON object there), so that is switched off in this process."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # its tqdm bars would cut the display


def quick_failures() -> None:
    """A tracking server that is down costs one short wait, not MLflow's default minutes of retries
    (7 retries with backoff): the first failure switches MLflow logging off anyway. A user's own
    setting wins."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")  # seconds per request


def redact_uri(uri: str) -> str:
    """``uri`` with the password (if any) replaced by ``***``: it is stored and shown."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def secrets_of(uri: str | None) -> list[str]:
    """The password in ``uri`` (and its %-decoded form), to be kept out of every message."""
    if not uri:
        return []
    from urllib.parse import unquote

    try:
        password = urlsplit(uri).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password)} if p] if password else []


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***`` (an error message may quote the URL)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
