"""Exception hierarchy: the CLI turns any AutomlError into one red line and exit code 1."""

from __future__ import annotations


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
