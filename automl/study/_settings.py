"""Options of ``automl search`` and ``automl worker``, checked once (command line > defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.device import check_device_name
from automl.exceptions import ConfigError
from automl.study._samplers import DEFAULT_SAMPLER, check_sampler
from automl.study._trial_pruners import DEFAULT_TRIAL_PRUNER, check_trial_pruner

if TYPE_CHECKING:
    from automl.runtime.latency import LatencySpec

HEARTBEAT_S = 10  # default seconds between trial heartbeats (database storages)
GRACE_HEARTBEATS = 3  # default grace period, in heartbeats, before a silent trial counts as dead


def grace_period(heartbeat: int | None, grace: int | None) -> int | None:
    """Seconds without a heartbeat before a running trial counts as dead (None: no heartbeats)."""
    if not heartbeat:
        return None
    return grace if grace is not None else GRACE_HEARTBEATS * heartbeat


def _check_heartbeat(heartbeat: int | None, grace: int | None) -> None:
    if heartbeat is not None and heartbeat < 0:
        raise ConfigError(f"--heartbeat must be >= 0 seconds (0 = off), got {heartbeat}")
    if grace is not None and heartbeat and grace <= heartbeat:
        raise ConfigError(f"--grace ({grace} s) must be longer than --heartbeat ({heartbeat} s)")


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {timeout}")


def column_list(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; names are kept; None or empty -> ``()``."""
    items = (value or "").split(",") if isinstance(value, str) or value is None else value
    return tuple(c.strip() for c in items if c.strip())


#: samplers that cannot optimise several objectives at once
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


def _check_objectives(settings: SearchSettings) -> None:
    """Parse ``--objectives`` (a string or names) into a tuple; a sampler must handle several objectives."""
    from automl.search.moo import is_multi, parse_objectives

    objectives = parse_objectives(settings.objectives)
    object.__setattr__(settings, "objectives", objectives)
    if settings.save_front and not is_multi(objectives):
        raise ConfigError("--save-front needs several --objectives (e.g. accuracy,latency); a single-objective "
                          "study's front is its best.pt")
    if is_multi(objectives) and settings.sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise ConfigError(f"--sampler {settings.sampler} optimises one objective; with --objectives "
                          f"{','.join(objectives)} use tpe (the default), nsga2, random, gp or grid")


CLASS_WEIGHTS = ("none", "balanced")


def _check_metric(settings: SearchSettings) -> None:
    """``--metric`` is known and fits the task (and ``--problem``), ``--class-weight`` is one of
    ``CLASS_WEIGHTS``: checked before any data is read (the data's own kind is checked once read)."""
    if settings.class_weight not in CLASS_WEIGHTS:
        raise ConfigError(f"--class-weight must be one of: {', '.join(CLASS_WEIGHTS)}; got {settings.class_weight!r}")
    if settings.metric is not None:
        from automl.tasks import get_task

        get_task(settings.task).choose_metric(settings.metric, settings.problem)


@dataclass(frozen=True)
class SearchSettings:
    """Options of ``automl search``; stored with the study (user attribute ``automl``)."""

    task: str = "image"
    data: str | None = None
    target: str | None = None
    space: str | None = None
    trials: int | None = 20
    timeout: float | None = None  # seconds: a deadline for the whole search, best.pt included
    epochs: int | None = None  # None: the task's default_epochs (text 5, image and tabular 10)
    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_TRIAL_PRUNER
    storage: str | None = None
    study: str | None = None
    out: str = "runs"
    device: str = "auto"
    seed: int = 0
    image_size: int | None = None
    problem: str | None = None
    categorical: tuple[str, ...] | str = ()  # tabular columns forced categorical / numeric ("a, b" or names)
    numeric: tuple[str, ...] | str = ()
    test_data: str | None = None  # a separate test file (tabular, text): --data is then train + validation
    normal: tuple[str, ...] | str = ()  # anomaly task: label values / image classes that are normal (--normal)
    contamination: float | None = None  # anomaly task: the expected anomaly share, in (0, 0.5) (--contamination)
    cv: int | None = None  # folds of cross-validation per trial (None: automl.search.cv's auto rule; 0: off)
    jobs: int = 1
    heartbeat: int = HEARTBEAT_S  # seconds between trial heartbeats (database storages; 0 = off)
    grace: int | None = None  # seconds without a heartbeat before a trial counts as dead (None: 3 x heartbeat)
    max_latency_ms: float | None = None  # a latency budget: networks slower on the target are not trained
    latency_batch: int = 1  # the latency target: rows per call, ONNX Runtime device and intra-op threads
    latency_device: str = "cpu"
    latency_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ()  # --objectives: the metric, then costs (automl.search.moo); () = the metric only
    save_front: bool = False  # --save-front: one checkpoint per Pareto-front member (<out>/<study>/front/)
    ensemble: bool = True  # --no-ensemble turns it off: best.pt may be an ensemble of trials (automl.study._ensemble)
    score: str = "none"  # --score int8 | fp16: trials are judged quantized (automl.runtime.int8)
    metric: str | None = None  # --metric: the metric trials are judged by (None: the task's default)
    class_weight: str = "none"  # --class-weight balanced | none
    #: the LatencySpec of --max-latency-ms and --latency-*, built once in __post_init__ from them (None: nothing
    #: is timed); a value passed in is replaced, so ``SearchSettings(**other.__dict__)`` stays consistent
    latency: LatencySpec | None = field(default=None, repr=False, compare=False)
    mlflow: str | None = None  # --mlflow URI: each trial a run in MLflow (automl.tracking); needs automl[mlflow]
    tensorboard: str | None = None  # --tensorboard DIR: each trial's curves and hparams; needs automl[tensorboard]

    def __post_init__(self) -> None:
        from automl.tracking import check_trackers

        check_trackers(self.mlflow, self.tensorboard)  # a missing extra: one line, before anything else
        for name in ("categorical", "numeric", "normal"):  # --categorical "a, b" -> ("a", "b")
            object.__setattr__(self, name, column_list(getattr(self, name)))
        _check_metric(self)
        _check_objectives(self)
        if self.contamination is not None and not 0 < self.contamination < 0.5:
            raise ConfigError(f"--contamination must be in (0, 0.5), got {self.contamination}")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        _check_timeout(self.timeout)
        if self.epochs is None:
            from automl.tasks import get_task

            object.__setattr__(self, "epochs", get_task(self.task).default_epochs)
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        check_sampler(self.sampler)
        check_trial_pruner(self.pruner)
        check_device_name(self.device)
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        _check_heartbeat(self.heartbeat, self.grace)
        from automl.search.cv import check_cv

        check_cv(self.cv, self.task)
        object.__setattr__(self, "latency", self._latency())  # --max-latency-ms parsed once, here
        from automl.runtime.int8 import check_score

        check_score(self.score)
        if self.test_data:
            from automl.tasks import get_task, list_tasks

            why = get_task(self.task).test_data_unsupported
            if why:
                names = " and ".join(n for n in list_tasks() if get_task(n).test_data_unsupported is None)
                raise ConfigError(f"--test-data is for the {names} tasks; {why}")

    @property
    def grace_period(self) -> int | None:
        """Seconds without a heartbeat before a running trial counts as dead."""
        return grace_period(self.heartbeat, self.grace)

    def _latency(self) -> LatencySpec | None:
        """The ``LatencySpec`` of ``--max-latency-ms`` and ``--latency-*`` (checked here, once); None without
        a budget or an objective that times networks."""
        from automl.runtime.latency import LatencySpec, LatencyTarget
        from automl.search.moo import needs_timing

        if self.max_latency_ms is None and not needs_timing(self.objectives):  # latency/size/macs objectives
            return None
        target = LatencyTarget(device=self.latency_device, batch=self.latency_batch, threads=self.latency_threads)
        return LatencySpec(max_latency_ms=self.max_latency_ms, target=target)


@dataclass(frozen=True)
class WorkerSettings:
    """Options of ``automl worker``; everything else comes from the study's stored ``automl`` config."""

    storage: str
    study: str
    trials: int | None = None
    timeout: float | None = None  # seconds from the start of this worker
    out: str = "runs"
    device: str = "auto"
    seed: int | None = None  # sampler seed; None: the stored seed + this process id
    heartbeat: int | None = None  # None: the stored value
    grace: int | None = None  # None: the stored value
    drain: bool = False  # run only the queued retries of dead workers' trials
    deadline_at: float | None = None  # a ``time.time()`` deadline (the ``--jobs`` parent's), instead of timeout
    mlflow: str | None = None  # --mlflow URI: this worker's trials logged to MLflow (automl.tracking)
    tensorboard: str | None = None  # --tensorboard DIR: this worker's trials as TensorBoard event files

    def __post_init__(self) -> None:
        from automl.tracking import check_trackers

        check_trackers(self.mlflow, self.tensorboard)
        if self.trials is not None and self.trials < 0:
            raise ConfigError(f"--trials must be >= 0, got {self.trials}")
        _check_timeout(self.timeout)
        check_device_name(self.device)
        _check_heartbeat(self.heartbeat, self.grace)
