"""The trial loop's observer with the trackers behind it: every event goes to the display first, then
to each tracker; a tracker that raises is switched off with one note, and the search goes on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.tracking._check import redact_uri, scrub, secrets_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optuna.trial import FrozenTrial


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"[:300]


class StudyTracker:
    """The trackers of one process on one study (``open_tracker`` builds it). ``notes`` collects what
    went wrong; ``wrap`` gives the observer the trial loop reports to."""

    def __init__(self, sinks: list[Any], notes: list[str], secrets: list[str] | None = None) -> None:
        self.sinks = sinks
        self.secrets = secrets or []  # kept out of the notes (a password in the tracking URI)
        self.notes = [scrub(n, self.secrets) for n in notes]
        self._said: Any = None  # the observer notes go to once a loop runs

    def _fail(self, sink: Any, exc: BaseException) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        note = scrub(f"{sink.name} logging stopped ({_first_line(exc)}); the search goes on without it", self.secrets)
        self.notes.append(note)
        if self._said is not None and hasattr(self._said, "on_note"):
            self._said.on_note(note)

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """``method`` on every tracker still on; one that raises is switched off (a note says why)."""
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args, **kwargs)
            except Exception as exc:  # any tracker failure (network, disk, a library's bug): never the search's
                self._fail(sink, exc)

    def wrap(self, observer: Any) -> TrackingObserver:
        """``observer`` (None: none) with the trackers behind it."""
        self._said = observer
        return TrackingObserver(observer, self)

    def finish(self, *, artifacts: Sequence[str | Path] = (), metrics: dict[str, float] | None = None,
               tags: dict[str, Any] | None = None, end: bool = False) -> None:
        """The study-wide summary (MLflow's study run: artifacts, best figures), then close every tracker."""
        self.call("finish", artifacts=[Path(p) for p in artifacts], metrics=metrics or {}, tags=tags or {}, end=end)
        self.close()

    def close(self) -> None:
        self.call("close")


class TrackingObserver:
    """A ``SearchObserver`` that passes every event to ``inner`` (the display) and to the trackers;
    anything else (``set_direction``, ``line``, …) is ``inner``'s."""

    def __init__(self, inner: Any, tracker: StudyTracker) -> None:
        self.inner = inner
        self.tracker = tracker

    def __getattr__(self, name: str) -> Any:
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        if self.inner is not None:
            self.inner.on_trial_start(number, params)
        self.tracker.call("trial_start", number, params)

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict[str, float]) -> None:
        if self.inner is not None:
            self.inner.on_epoch(number, epoch, epochs, record)
        self.tracker.call("epoch", number, record)

    def on_trial_end(self, trial: FrozenTrial) -> None:
        if self.inner is not None:
            self.inner.on_trial_end(trial)
        self.tracker.call("trial_end", trial)

    def on_note(self, message: str) -> None:
        if self.inner is not None and hasattr(self.inner, "on_note"):
            self.inner.on_note(message)


def open_tracker(run: Any, mlflow: str | None, tensorboard: str | None) -> StudyTracker | None:
    """The trackers asked for on ``run`` (a ``StudyRun``); None when neither is. A tracker that cannot
    start (a server that does not answer) is left out with a note in ``notes``."""
    if not mlflow and not tensorboard:
        return None
    study, task = run.study, run.task
    sinks: list[Any] = []
    notes: list[str] = []
    if mlflow:
        from automl.tracking.mlflow_log import MlflowStudyLog

        try:
            sinks.append(MlflowStudyLog(
                mlflow, study.study_name, metric=task.metric, objectives=tuple(run.objectives),
                directions=[d.name for d in study.directions],
                study_tags={"task": task.name, "metric": task.metric, "storage": redact_uri(run.url),
                            "data": run.data_cfg.source, "epochs": run.epochs}))
        except Exception as exc:  # a wrong URI or a server down: said, and the search goes on
            notes.append(f"MLflow logging to {redact_uri(mlflow)} is off ({_first_line(exc)}); "
                         "the search goes on without it")
    if tensorboard:
        from automl.tracking.tensorboard_log import TensorBoardStudyLog

        try:
            sinks.append(TensorBoardStudyLog(tensorboard, study.study_name, metric=task.metric))
        except Exception as exc:
            notes.append(f"TensorBoard logging to {tensorboard} is off ({_first_line(exc)}); "
                         "the search goes on without it")
    return StudyTracker(sinks, notes, secrets_of(mlflow))
