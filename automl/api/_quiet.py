"""Silence for library calls, and progress as plain events.

``quiet()`` keeps a call of the Python API off the terminal: Optuna's log and every Python warning are
held back while it runs (warnings are recorded, to become notes of the result) and Optuna's verbosity,
its logger's level and the warning filters are put back afterwards, so the caller's own settings
survive. ``SearchEvents`` and ``CompressEvents`` turn the library's observer calls into one plain dict
per event for a ``progress`` callable.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: what ``progress=`` receives: one dict per event, ``event`` naming its kind
Progress = Callable[[dict[str, Any]], object]


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Run the block with Optuna's log at ERROR and every warning recorded, not shown; yields the list
    that receives the warnings' texts (each once, in order). Everything is restored on the way out."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    logger = logging.getLogger("optuna")
    level = logger.level
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:  # restores the filters and showwarning after
        warnings.simplefilter("default")  # once per place: a warning raised every batch is recorded once
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            yield seen
        finally:
            optuna.logging.set_verbosity(verbosity)
            logger.setLevel(level)
            for w in caught:
                lines = str(w.message).strip().splitlines()
                text = f"{w.category.__name__}: {lines[0] if lines else ''}"
                if text not in seen:
                    seen.append(text)


class SearchEvents:
    """A search observer (``automl.search.objective.SearchObserver``'s methods) that calls ``progress``
    with ``{"event": "trial_start" | "epoch" | "trial_end" | "note" | "direction", ...}``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def set_direction(self, direction: str, metric: str) -> None:
        self.progress({"event": "direction", "direction": direction, "metric": metric})

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        self.progress({"event": "trial_start", "trial": number, "params": dict(params)})

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.progress({"event": "epoch", "trial": number, "epoch": epoch, "epochs": epochs, **record})

    def on_trial_end(self, trial: optuna.trial.FrozenTrial) -> None:
        value = trial.values[0] if trial.values else None
        self.progress({"event": "trial_end", "trial": trial.number, "state": trial.state.name.lower(),
                       "value": value, "params": dict(trial.params)})

    def on_note(self, message: str) -> None:
        self.progress({"event": "note", "message": message})


class CompressEvents:
    """A compress observer (``compress.context.CompressObserver``'s methods) that calls ``progress``
    with ``{"event": "stage" | "epoch" | "note", ...}``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_stage(self, name: str) -> None:
        self.progress({"event": "stage", "stage": name})

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.progress({"event": "epoch", "epoch": epoch, "epochs": epochs, **record})

    def on_note(self, message: str) -> None:
        self.progress({"event": "note", "message": message})


def check_progress(progress: object) -> None:
    """``progress=`` must be a callable or None."""
    from automl.exceptions import ConfigError

    if progress is not None and not callable(progress):
        raise ConfigError(f"progress= must be a callable taking one dict (or None), got {type(progress).__name__}")
