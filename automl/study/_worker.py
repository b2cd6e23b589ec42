"""``automl worker``: join a study that ``automl search`` created, from this or another machine."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.exceptions import StorageError
from automl.study._settings import WorkerSettings, grace_period
from automl.study.storage import counts, load_existing_study, open_storage, redact, resolve_storage, silence_optuna

if TYPE_CHECKING:
    import optuna

    from automl.runtime.latency import LatencySpec
    from automl.search.objective import SearchObserver
    from automl.study._run import StudyRun


@dataclass
class WorkerResult:
    """What ``run_worker`` returns (and ``automl worker --json`` prints)."""

    study: str
    storage: str
    worker: str
    trials_run: int
    retries_run: int
    reaped: list[int]
    interrupted: bool
    counts: dict[str, int]
    best_trial: int | None
    best_value: float | None
    best_pt: str | None
    metric: str
    seconds: float

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["storage"] = redact(self.storage)
        return out


def stored_config(study: optuna.Study) -> dict[str, Any]:  # JSON read by key
    """The search configuration ``automl search`` stored with the study."""
    config = study.user_attrs.get("automl")
    if not isinstance(config, dict) or "task" not in config or "space" not in config:
        raise StorageError(
            f"study '{study.study_name}' has no automl search configuration "
            "(create it with 'automl search --storage URL --study NAME')"
        )
    return config


def check_worker(settings: WorkerSettings) -> None:
    """Open the storage and find the study and its configuration, so bad input fails before any
    progress display."""
    url = resolve_storage(settings.storage, Path(settings.out))
    if "://" not in url and not Path(url).is_file():
        raise StorageError(f"journal file {url} does not exist (a worker joins a study that 'automl search' created)")
    stored_config(load_existing_study(open_storage(url), url, settings.study))


def _deadline(settings: WorkerSettings, start: float) -> float | None:
    """The ``time.monotonic()`` deadline: the ``--jobs`` parent's wall-clock one, or ``--timeout``."""
    if settings.deadline_at is not None:
        return time.monotonic() + (settings.deadline_at - time.time())
    return None if settings.timeout is None else start + settings.timeout


def open_worker_run(settings: WorkerSettings, start: float) -> StudyRun:
    """The ``StudyRun`` of a worker: the study with the task, data source, space, epochs, sampler and
    trial pruner it stored, opened with this worker's heartbeat and device."""
    from automl.data.bundle import DataConfig
    from automl.device import resolve_device
    from automl.search.space import parse_space
    from automl.study._reaper import retry_callback, trial_attrs
    from automl.study._run import StudyRun
    from automl.study._samplers import make_sampler
    from automl.study._trial_pruners import make_trial_pruner
    from automl.tasks import get_task

    silence_optuna()
    url = resolve_storage(settings.storage, Path(settings.out))
    config = stored_config(load_existing_study(open_storage(url), url, settings.study))
    heartbeat = config.get("heartbeat", 0) if settings.heartbeat is None else settings.heartbeat
    grace = grace_period(heartbeat, settings.grace if settings.grace is not None else config.get("grace"))
    retry = retry_callback()
    storage = open_storage(url, heartbeat or None, grace, retry)
    task = get_task(config["task"])
    task.use_stored_metric(config.get("metric"))  # the metric the study's trials are judged by
    task.class_weight = str(config.get("class_weight") or "none")
    task.tune_threshold = bool(config.get("decision_threshold"))
    space = parse_space(config["space"], config.get("space_source", "<stored>"), config["task"])
    epochs = int(config["epochs"])
    from automl.search.moo import optuna_pruner

    objectives = tuple(config.get("objectives") or ())
    seed = int(config.get("seed", 0))
    sampler_seed = settings.seed if settings.seed is not None else seed + os.getpid()
    study = load_existing_study(storage, url, settings.study, sampler=make_sampler(config.get("sampler", "tpe"),
                                                                                   sampler_seed, space),
                                pruner=optuna_pruner(objectives, config.get("pruner", "median"), epochs,
                                                     make_trial_pruner(config.get("pruner", "median"),
                                                                       int(config.get("cv") or 0) or epochs)))
    run = StudyRun(
        study=study, storage=storage, retry=retry, url=url, task=task, space=space,
        data_cfg=DataConfig(**config["data"]), device=resolve_device(settings.device),
        run_dir=Path(settings.out) / study.study_name, epochs=epochs, seed=seed, trial_attrs=trial_attrs(grace),
        deadline=_deadline(settings, start), cv=int(config.get("cv") or 0),
        objectives=objectives,
        latency=_stored_latency(config),
        score=str(config.get("score") or "none"),
    )
    from automl.study._budget_sampler import install_budget_sampler

    install_budget_sampler(run, config.get("sampler", "tpe"))
    return run


def _stored_latency(config: dict[str, Any]) -> LatencySpec | None:
    """The latency budget and target the study was created with (None: none)."""
    from automl.runtime.latency import LatencySpec

    return LatencySpec.from_dict(config.get("latency"))


def run_worker(settings: WorkerSettings, observer: SearchObserver | None = None,
               start: float | None = None) -> WorkerResult:
    """Join an existing study: rebuild task, data and space from its stored configuration, run
    trials, and keep best.pt current while this machine holds the best trial's weights (a worker
    never retrains another machine's trial). ``--timeout`` counts from ``start`` (default: now)."""
    from automl.study._best import write_best
    from automl.study._loop import run_trials

    start = time.monotonic() if start is None else start
    run = open_worker_run(settings, start)
    study, task = run.study, run.task
    if observer is not None and hasattr(observer, "set_direction"):
        observer.set_direction(task.direction, task.metric)
    stop_at = run.train_deadline()
    if stop_at is None or time.monotonic() < stop_at:
        run.bundle  # noqa: B018 - load the data before the first trial's progress line
    from automl.tracking import open_tracker

    tracker = open_tracker(run, settings.mlflow, settings.tensorboard)  # this worker's trials, by its own client
    if tracker is not None:
        for note in tracker.notes:
            if observer is not None and hasattr(observer, "on_note"):
                observer.on_note(note)
        observer = tracker.wrap(observer)
    try:
        stats = run_trials(run, n_trials=settings.trials, observer=observer, drain=settings.drain)
    finally:
        if tracker is not None:
            tracker.close()  # the study run is the search's to end
    best_trial = best_value = None
    with contextlib.suppress(ValueError):
        from automl.search.moo import pick_best

        chosen = pick_best(study)  # the study's best trial; on a multi-objective study, its most accurate
        best_trial, best_value = chosen.number, float(chosen.values[0])
    best = write_best(run, retrain=False) if best_trial is not None else None
    return WorkerResult(
        study=study.study_name, storage=run.url, worker=run.trial_attrs["worker"], trials_run=stats.fresh,
        retries_run=stats.retries, reaped=stats.reaped, interrupted=stats.interrupted, counts=counts(study),
        best_trial=best_trial, best_value=best_value, best_pt=best.best_pt if best is not None else None,
        metric=task.metric, seconds=round(time.monotonic() - start, 2),
    )
