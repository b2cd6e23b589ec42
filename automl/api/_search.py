"""``automl.search``: the Python form of ``automl search``, through the same library call
(``automl.study.search_command``), silent unless given a ``progress`` callable."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.api._data import is_in_memory, resolve_data
from automl.api._quiet import Progress, SearchEvents, check_progress, quiet
from automl.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import torch

    from automl.api._predict import Predictor
    from automl.study import SearchResult, SearchSettings

#: the task of in-memory data (a DataFrame, an (X, y) pair) when ``task`` is not given; a path's default
#: is ``automl search``'s (``SearchSettings.task``)
DEFAULT_MEMORY_TASK = "tabular"

#: SearchSettings fields that search() names itself or that are derived, not passed as **options
_OWN = frozenset({"task", "data", "target", "trials", "timeout", "epochs", "out", "study", "latency", "extra"})


def option_names() -> list[str]:
    """The keywords ``search(**options)`` takes: the other fields of ``SearchSettings``."""
    from automl.study import SearchSettings

    return sorted(f.name for f in dataclasses.fields(SearchSettings) if f.name not in _OWN)


def check_options(options: dict[str, Any]) -> None:
    """An unknown keyword is a ConfigError naming it, the closest known one, and all of them."""
    known = option_names()
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"search() got an unknown keyword {name!r}{hint}; known: {', '.join(known)}")


def search(task: str | None = None, data: Any = None, target: str | None = None, *,
           metric: str | None = None, timeout: float | None = None, trials: int | None = None,
           epochs: int | None = None, out: str | Path = "runs", study: str | None = None,
           progress: Progress | None = None, **options: Any) -> Result:
    """Search models for ``data`` with Optuna and save the best as ``<out>/<study>/best.pt``.

    ``data``: a path (table file, image folder, text table) or a built-in name (``"digits"``,
    ``"wine"``), a pandas DataFrame, or an ``(X, y)`` pair (tabular: a 2-D array or DataFrame and a 1-D
    array; text: a list of strings and their labels). In-memory data is written once into the run
    folder (``automl.api._data``). ``task`` defaults to ``DEFAULT_MEMORY_TASK`` (tabular) for in-memory
    data, else to the default ``--task``. ``timeout`` (seconds) bounds the whole call, best.pt included;
    with ``timeout`` alone trials run until it. ``metric`` and the other keywords are the options of ``automl search``
    (``sampler``, ``pruner``, ``seed``, ``device``, ``cv``, ``objectives``, ``max_latency_ms`` …; see
    ``automl.api.option_names()``); an unknown one is a ConfigError. Nothing is printed: ``progress``,
    when given, is called with one dict per event (``{"event": "trial_end", "trial": 0, "state":
    "complete", "value": 0.93, ...}``); warnings become ``Result.notes``.

    >>> import automl, pandas as pd  # doctest: +SKIP
    >>> df = pd.read_csv("churn.csv")  # doctest: +SKIP
    >>> result = automl.search(task="tabular", data=df, target="churned", timeout=600)  # doctest: +SKIP

    (A whole session that runs is in ``automl.api``'s docstring.)
    """
    from automl.study import SearchSettings, resolve_trials, search_command

    start = time.monotonic()
    check_progress(progress)
    if metric is not None:
        options["metric"] = metric
    check_options(options)
    task = task or (DEFAULT_MEMORY_TASK if is_in_memory(data) else SearchSettings.task)
    # every option is checked before in-memory data is written into the run folder
    checked = SearchSettings(task=task, target=target, trials=resolve_trials(trials, timeout), timeout=timeout,
                             epochs=epochs, out=str(out), study=study, **options)
    source = resolve_data(task, data, target, out, study)
    settings = dataclasses.replace(checked, data=source.source, target=source.target, study=source.study)
    shown = contextlib.nullcontext(SearchEvents(progress)) if progress is not None else None
    with quiet() as warned:
        summary = search_command(settings, shown, start)  # --timeout counts from this call's start
    for w in warned:
        if progress is not None:
            progress({"event": "note", "message": w})
    return Result(summary, settings, [*summary.notes, *warned])


class Result:
    """What ``automl.search`` returns: the study, the best model, the leaderboard, and the ways on
    (``compress``, ``export``, ``predictor``). ``summary`` is the library's ``SearchResult`` (what
    ``automl search --json`` prints, ``summary.to_json()``)."""

    def __init__(self, summary: SearchResult, settings: SearchSettings, notes: list[str]) -> None:
        self.summary = summary
        self.settings = settings
        self.notes = notes

    def __repr__(self) -> str:
        s = self.summary
        return (f"<automl Result study={s.study!r} task={s.task} best trial {s.best_trial}: val {s.metric} "
                f"{s.best_value:.4g}, test {s.test_metric:.4g}; {self.best_pt}>")

    @property
    def best_pt(self) -> Path:
        """The best model's checkpoint (``load_model``, ``compress``, ``Predictor`` read it)."""
        return Path(self.summary.best_pt)

    @property
    def metric(self) -> str:
        return self.summary.metric

    @property
    def direction(self) -> str:
        return self.summary.direction

    @property
    def best_value(self) -> float:
        """The best trial's validation score, in ``metric``."""
        return self.summary.best_value

    @property
    def test_metric(self) -> float:
        """The best model's score on the test split, in ``metric``."""
        return self.summary.test_metric

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.summary.params)

    @property
    def interrupted(self) -> bool:
        """Ctrl-C ended the search early (the study is kept: search again with the same arguments to resume)."""
        return self.summary.interrupted

    @functools.cached_property
    def study(self) -> optuna.Study:
        """The Optuna study, loaded from the search's storage."""
        import optuna

        from automl.study import open_storage

        return optuna.load_study(study_name=self.summary.study, storage=open_storage(self.summary.storage))

    @functools.cached_property
    def best_model(self) -> torch.nn.Module:
        """The best model as a ``torch.nn.Module`` in eval mode, on the CPU. It takes the encoded batch
        (``Predictor(best_pt).encode(...)``); ``predictor()`` takes raw rows, texts or images."""
        from automl.artifacts import load_model

        return load_model(self.best_pt)

    @property
    def leaderboard(self) -> pd.DataFrame:
        """Every family's best trial and the classic reference, best first: columns ``name``, ``kind``
        (family | reference), ``model``, ``trials``, ``complete``, ``best_trial``, ``val_<metric>``,
        ``test_<metric>``, ``seconds``; ``attrs`` holds ``metric`` and ``direction``."""
        import pandas as pd

        board = self.summary.leaderboard
        cols = ["name", "kind", "model", "trials", "complete", "best_trial", "val", "test", "seconds"]
        frame = pd.DataFrame(board.get("rows", []), columns=cols)
        frame = frame.rename(columns={"val": f"val_{self.metric}", "test": f"test_{self.metric}"})
        frame.attrs.update(metric=board.get("metric", self.metric), direction=board.get("direction", self.direction))
        return frame

    def predictor(self, threads: int = 0) -> Predictor:
        """A ``Predictor`` over ``best_pt``."""
        from automl.api._predict import Predictor

        return Predictor(self.best_pt, threads=threads)

    def compress(self, progress: Progress | None = None, **options: Any) -> pd.DataFrame:
        """``automl.compress(best_pt, **options)``: the variants table (see ``automl.api.compress``)."""
        from automl.api._compress import compress

        return compress(self.best_pt, progress=progress, **options)

    def export(self, path: str | Path | None = None) -> Path:
        """The best model as one FP32 ONNX file with automl metadata (default: ``best.onnx`` beside
        best.pt), checked against PyTorch on test rows; returns its path."""
        from automl.api._compress import export

        return export(self.best_pt, path)

    def to_json(self) -> dict[str, Any]:
        """What ``automl search --json`` prints for the same search."""
        return self.summary.to_json()
