"""Exception hierarchy, and the one mapping from an exception to a process exit code.

The CLI turns any AutomlError into one red line; ``exit_code`` says which code it exits with (the
``--jobs`` worker processes use the same mapping, so the parent reads their codes the same way).
"""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class AutomlError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(AutomlError):
    """An option or configuration value is invalid (unknown name, value out of range)."""


class DataError(AutomlError):
    """The data cannot be loaded or is unusable (missing, empty, one class, corrupt file)."""


class SearchSpaceError(AutomlError):
    """A search-space file is malformed."""


class ArtifactError(AutomlError):
    """A checkpoint, ONNX file or report is missing, corrupt or of the wrong kind."""


class StorageError(AutomlError):
    """The study storage cannot be reached, or the study does not exist."""


class TrainingError(AutomlError):
    """Training failed for a reason the user must act on."""


class InputError(DataError):
    """An input that predict or serve cannot give the model (wrong shape, not a number, unreadable image …).

    ``code`` is a short machine-readable name (``wrong_shape``, ``not_finite``, ``body_too_large`` …);
    the server maps it to an HTTP status, the library knows nothing of HTTP.
    """

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code


class TrialFailedError(TrainingError):
    """One trial failed for a reason that must not stop the study (CUDA out of memory, a model the
    sampled parameters cannot build); the trial loop records it and goes on."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite in ``epoch`` (1-based); the objective prunes the trial."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"loss became NaN/inf in epoch {epoch}")
        self.epoch = epoch


class DeadlineReached(TrainingError):
    """Training stopped at a deadline (``--timeout``) after ``epochs`` whole epochs; the objective
    prunes the trial."""

    def __init__(self, epochs: int) -> None:
        super().__init__(f"deadline: --timeout reached after {epochs} epoch{'s' if epochs != 1 else ''}")
        self.epochs = epochs


class SearchInterrupted(AutomlError):
    """Ctrl-C (or SIGTERM) before any trial completed: nothing to write."""


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that ends with ``exc``: 130 for an interrupt, 1 for anything else."""
    if isinstance(exc, (KeyboardInterrupt, SearchInterrupted)):
        return EXIT_INTERRUPTED
    return EXIT_ERROR
