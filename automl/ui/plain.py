"""Plain progress lines for stderr that is not a terminal (a pipe, a file, a CI log).

Rich's live display redraws one region of a terminal; written to a pipe it holds every line back
until the run ends. These observers print one timestamped line per event instead, flushed at once.
Only ``cli.py`` uses this module; library code never prints.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import optuna
    from rich.console import Console


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (Rich's live display works there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class PlainLines:
    """Writes ``HH:MM:SS message`` lines to a stream and flushes each one."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def line(self, message: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} {message}\n")
        self.stream.flush()


class PlainSearchObserver(PlainLines):
    """Search progress as plain lines: trial start (parameters) and end (state, value, seconds).

    Also an ``automl.search.objective.SearchObserver`` by duck typing (the same four ``on_*`` methods).
    """

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.total = total
        self.metric = "value"
        self.maximize = True
        self.best: float | None = None
        self.trials_started = 0  # trials started in this run (the line says "k/total")

    def __enter__(self) -> PlainSearchObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_direction(self, direction: str, metric: str) -> None:
        self.maximize = direction == "maximize"
        self.metric = metric

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        self.trials_started += 1
        of = f"/{self.total}" if self.total else ""
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        self.line(f"trial {number} started ({self.trials_started}{of}): {shown}")

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.line(f"trial {number} epoch {epoch}/{epochs}: val {record['val_metric']:.4f}, "
                  f"loss {record['train_loss']:.3f}")

    def on_note(self, message: str) -> None:
        self.line(f"note: {message}")

    def on_trial_end(self, trial: optuna.trial.FrozenTrial) -> None:
        from automl.search.moo import first_value

        value_ = first_value(trial)  # the metric (trial.value raises in a multi-objective study)
        state = trial.state.name.lower()
        stopped = trial.user_attrs.get("stopped") if state == "complete" else None  # "deadline": cut short, kept
        value = "" if value_ is None else f", val {self.metric} {value_:.4f}"
        seconds = trial.user_attrs.get("seconds")
        took = f", {seconds:.1f} s" if isinstance(seconds, int | float) else ""
        from automl.study.trials import epochs_text, folds_of

        epochs = trial.user_attrs.get("epochs")
        ran = f", {epochs_text(epochs, folds_of(trial.user_attrs.get('history') or []))}" if epochs is not None else ""
        if state == "complete" and value_ is not None and (
            self.best is None or (value_ > self.best if self.maximize else value_ < self.best)
        ):
            self.best = value_
        best = f" (best so far {self.best:.4f})" if self.best is not None else ""
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason") or ""
        why = f": {reason}" if reason and state != "complete" else ""
        if stopped:
            state, why = f"{state} ({stopped})", f": {trial.user_attrs.get('stop_reason', '')}"
        self.line(f"trial {trial.number} {state}{value}{ran}{took}{best}{why}")


class PlainCompressObserver(PlainLines):
    """Compress progress as plain lines: each stage when it starts, and its duration when it ends.

    The first stage (reading and checking the checkpoint and its data) is reported only when it
    ends, so a bad argument stays the one error line on stderr.
    Also a ``compress.pipeline.CompressObserver`` by duck typing.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._stage: str | None = None
        self._stages = 0
        self._t0 = time.perf_counter()
        self._start = self._t0

    def __enter__(self) -> PlainCompressObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc and exc[0] is not None:
            return  # the stage failed: the error line that follows says why
        self._close()
        self.line(f"compress done in {time.perf_counter() - self._start:.1f} s")

    def _close(self) -> None:
        if self._stage is not None:
            self.line(f"done: {self._stage} ({time.perf_counter() - self._t0:.1f} s)")
        self._stage = None

    def on_stage(self, name: str) -> None:
        self._close()
        self._stage, self._t0 = name, time.perf_counter()
        self._stages += 1
        if self._stages > 1:
            self.line(f"stage: {name}")

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.line(f"fine-tune epoch {epoch}/{epochs}: val {record['val_metric']:.4f}, "
                  f"loss {record['train_loss']:.3f}")

    def on_note(self, message: str) -> None:
        self.line(f"note: {message}")


def stderr_console() -> Console:
    """A Rich console on stderr (errors, warnings, notes: stdout stays the result)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(obj: object) -> None:
    """``--json``: one JSON object on stdout, flushed (a script reads it at once)."""
    import json

    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
