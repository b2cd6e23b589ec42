"""Storage URLs, samplers and pruners by name, create/load/resume a study, run it, keep the best."""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, StorageError, TrainingError
from automl.space import Space, grid

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2", "grid")
PRUNERS = ("hyperband", "median", "sha", "none")
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "median"


def make_sampler(name: str, seed: int | None, space: Space | None = None, n_startup_trials: int = 5) -> Any:
    """An Optuna sampler by name; ConfigError lists the valid names."""
    import optuna

    s = optuna.samplers
    if name == "tpe":
        return s.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True, group=True)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles the numeric parameters; categorical ones go to a TPE sampler.
        return s.CmaEsSampler(
            seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False,
            independent_sampler=s.TPESampler(seed=seed),
        )
    if name == "gp":
        return s.GPSampler(seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed, population_size=max(4, n_startup_trials))
    if name == "grid":
        if space is None:
            raise ConfigError("the grid sampler needs a search space")
        return s.GridSampler(grid(space), seed=seed)
    raise ConfigError(f"unknown sampler {name!r} (choose from: {', '.join(SAMPLERS)})")


def make_pruner(name: str, epochs: int) -> Any:
    """A trial pruner by name, sized for trials of at most ``epochs`` epochs."""
    import optuna

    p = optuna.pruners
    if name == "median":
        return p.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 3))
    if name == "hyperband":
        return p.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    if name == "sha":
        return p.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return p.NopPruner()
    raise ConfigError(f"unknown pruner {name!r} (choose from: {', '.join(PRUNERS)})")


def resolve_storage(storage: str | None, out: Path) -> str:
    """``None`` -> ``sqlite:///<out>/automl.db``; a plain path ending in .db -> SQLite; URLs as given."""
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(out / 'automl.db').resolve()}"
    if "://" not in storage:
        if storage.endswith((".db", ".sqlite", ".sqlite3")):
            Path(storage).parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{Path(storage).resolve()}"
        if storage.endswith((".log", ".journal")):
            return storage
        raise StorageError(
            f"storage {storage!r}: not a URL (use sqlite:///file.db, postgresql://user:pass@host/db, "
            f"mysql://…, or a journal file ending in .log)"
        )
    scheme = storage.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise StorageError(f"storage {storage!r}: unknown scheme '{scheme}' (use sqlite, postgresql or mysql)")
    if scheme == "sqlite":
        path = storage.split("://", 1)[1].lstrip("/")
        if path and path != ":memory:":
            Path("/" + path if storage.startswith("sqlite:////") else path).parent.mkdir(parents=True, exist_ok=True)
    return storage


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> Any:
    """An Optuna storage object for a resolved URL; StorageError with one line when unreachable.

    With ``heartbeat_interval`` (seconds; database storages only) each running trial records a
    heartbeat, and a trial silent for ``grace_period`` seconds (default 2 x interval) is marked
    failed and retried once (see ``automl.workers``).
    """
    import optuna

    if "://" not in url:  # journal file: no heartbeats; the --jobs parent fails a dead child's trial
        try:
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except Exception as exc:
            raise StorageError(f"cannot open journal file {url}: {first_line(exc)}") from None
    scheme = url.split("://", 1)[0].lower()
    engine_kwargs: dict[str, Any] = {}
    if not scheme.startswith("sqlite"):
        engine_kwargs["pool_pre_ping"] = True
    if scheme.startswith("postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}  # seconds; an unreachable host fails fast
    elif scheme.startswith("mysql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        import inspect

        from automl.workers import retry_callback

        kwargs["heartbeat_interval"] = int(heartbeat_interval)
        kwargs["grace_period"] = int(grace_period) if grace_period else None
        # Optuna 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback.
        params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
        name = "heartbeat_stale_trial_callback"
        if name not in params:
            name = "failed_trial_callback"
        kwargs[name] = retry_callback()
    try:
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=engine_kwargs or None, **kwargs)
    except ImportError as exc:  # Optuna wraps the driver's ModuleNotFoundError
        cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        missing = getattr(cause, "name", None) or "a database driver"
        if scheme.startswith("mysql"):
            missing, hint = "a MySQL driver", " (pip install pymysql)"
        else:
            hint = " (pip install psycopg2-binary)"
        raise StorageError(f"cannot open storage {redact(url)}: {missing} is not installed{hint}") from None
    except Exception as exc:  # sqlalchemy OperationalError, ArgumentError, …
        raise StorageError(f"cannot open storage {redact(url)}: {first_line(exc)}") from None


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def with_driver(url: str) -> str:
    """Name an installed database driver in a URL that names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 and ``mysql://`` to mysqlclient; automl
    ships psycopg2-binary, and PyMySQL is the usual pure-Python MySQL driver. ``postgres://`` (the
    Heroku spelling) becomes ``postgresql://``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "+" in scheme:
        return url
    low = scheme.lower()
    if low in ("postgresql", "postgres"):
        driver = "psycopg" if _module_available("psycopg") else "psycopg2"
        return f"postgresql+{driver}://{rest}"
    if low == "mysql":
        if _module_available("MySQLdb"):
            return url
        if _module_available("pymysql"):
            return f"mysql+pymysql://{rest}"
    return url


def redact(url: str) -> str:
    """Hide the password of a database URL in messages."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    orig = getattr(exc, "orig", None)  # sqlalchemy wraps the driver's error
    if orig is not None and str(orig).strip():
        text = str(orig).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


@dataclass(frozen=True)
class SearchSettings:
    """Options of ``automl search``, resolved once (command line > defaults) and saved with the study."""

    task: str = "image"
    data: str | None = None
    target: str | None = None
    space: str | None = None
    trials: int | None = 20
    timeout: float | None = None
    epochs: int = 10
    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_PRUNER
    storage: str | None = None
    study: str | None = None
    out: str = "runs"
    device: str = "auto"
    seed: int = 0
    image_size: int | None = None
    problem: str | None = None
    jobs: int = 1
    heartbeat: int = 10  # seconds between trial heartbeats (database storages; 0 = off)
    grace: int | None = None  # seconds without a heartbeat before a trial counts as dead (None: 3 x heartbeat)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r} (choose from: {', '.join(SAMPLERS)})")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r} (choose from: {', '.join(PRUNERS)})")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r} (choose from: auto, cpu, cuda)")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        if self.heartbeat < 0:
            raise ConfigError(f"--heartbeat must be >= 0 seconds (0 = off), got {self.heartbeat}")
        if self.grace is not None and self.heartbeat and self.grace <= self.heartbeat:
            raise ConfigError(f"--grace ({self.grace} s) must be longer than --heartbeat ({self.heartbeat} s)")

    @property
    def grace_period(self) -> int | None:
        """Seconds without a heartbeat before a running trial counts as dead."""
        if not self.heartbeat:
            return None
        return self.grace if self.grace is not None else 3 * self.heartbeat


def resolve_device(name: str) -> Any:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    return torch.device(name)


def default_study_name(task: str, data: str) -> str:
    base = Path(data.rstrip("/")).name or data
    base = re.sub(r"(\.(csv|tsv|txt|parquet|json|jsonl))?(\.(gz|bz2|xz|zip|zst))?$", "", base, flags=re.I) or base
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{task}-{base}").strip("-")


def silence_optuna() -> None:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    # Failed trials are recorded in their user attributes and shown by the CLI; Optuna's own
    # warning (with a traceback for Ctrl-C) would only repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)


def counts(study: Any) -> dict[str, int]:
    """Number of trials per state."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "total": len(trials),
    }


def elapsed_since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


@dataclass
class SearchResult:
    """What ``run_search`` returns (and ``--json`` prints)."""

    study: str
    storage: str
    task: str
    metric: str
    direction: str
    best_trial: int
    best_value: float
    test_metric: float
    best_pt: str
    best_json: str
    counts: dict[str, int]
    params: dict[str, Any]
    seconds: float
    device: str
    interrupted: bool = False
    jobs: int = 1
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {
            "study": self.study,
            "storage": redact(self.storage),
            "task": self.task,
            "metric": self.metric,
            "direction": self.direction,
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            f"test_{self.metric}": self.test_metric,
            "best_pt": self.best_pt,
            "best_json": self.best_json,
            "n_complete": self.counts["complete"],
            "n_pruned": self.counts["pruned"],
            "n_failed": self.counts["failed"],
            "n_trials": self.counts["total"],
            "params": self.params,
            "seconds": self.seconds,
            "device": self.device,
            "jobs": self.jobs,
            "interrupted": self.interrupted,
            "notes": self.notes,
        }
        return out


def _check_resume(study: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A resumed study keeps its task and data; a different one is a ConfigError."""
    stored = study.user_attrs.get("automl")
    if not stored:
        study.set_user_attr("automl", config)
        return config
    for key in ("task", "data"):
        if stored.get(key) != config.get(key):
            raise ConfigError(
                f"study '{study.study_name}' was created with {key}={stored.get(key)!r}, "
                f"not {config.get(key)!r}; use another --study name"
            )
    return stored


def storage_for(settings: SearchSettings, out: Path) -> tuple[str, str | None]:
    """The storage URL for a search, and a note for the user when it differs from the one asked for.

    SQLite takes one writer at a time, so ``--jobs > 1`` on the default storage uses a journal file
    (``<out>/journal.log``) instead; an explicit SQLite URL with ``--jobs > 1`` is a ConfigError.
    """
    url = resolve_storage(settings.storage, out)
    if settings.jobs == 1 or not url.startswith("sqlite"):
        return url, None
    if settings.storage is not None:
        raise ConfigError(
            f"--jobs {settings.jobs}: SQLite ({redact(url)}) takes one writer at a time; use a journal file "
            f"(--storage {out / 'journal.log'}) or a server (--storage postgresql://user:pass@host/db)"
        )
    journal = str((out / "journal.log").resolve())
    note = (
        f"--jobs {settings.jobs}: SQLite takes one writer at a time, so this study is stored in the journal "
        f"file {journal}; pass --storage {journal} to resume it or to add workers"
    )
    return journal, note


def check_storage(settings: SearchSettings) -> str:
    """Resolve and open the search's storage once, so a bad URL fails before any progress display."""
    url, _ = storage_for(settings, Path(settings.out))
    open_storage(url)
    return url


@dataclass
class PreparedSearch:
    """A created or resumed study with its stored configuration, ready for workers."""

    study: Any
    task: Any
    space: Space
    data_cfg: Any
    device: Any
    storage_url: str
    run_dir: Path
    heartbeat: int
    notes: list[str]


def prepare_search(settings: SearchSettings, observer: Any = None) -> PreparedSearch:
    """Create or resume the study and store the search configuration in its user attribute ``automl``
    (task, data, space, epochs, sampler, pruner, seed, heartbeat), which ``automl worker`` reads."""
    import optuna

    from automl.space import resolve_space
    from automl.tasks import DataConfig, get_task

    silence_optuna()
    task = get_task(settings.task)
    space = resolve_space(settings.space, settings.task)
    check_space_fits_task(space, task)
    data_source = settings.data or default_data(settings.task)
    data_cfg = DataConfig(
        source=data_source, seed=settings.seed, target=settings.target, image_size=settings.image_size,
        problem=settings.problem,
    )
    task.prepare(data_cfg)  # tabular: classification or regression decides the metric and direction
    device = resolve_device(settings.device)
    out = Path(settings.out)
    storage_url, note = storage_for(settings, out)
    notes = [note] if note else []
    if note and observer is not None and hasattr(observer, "on_note"):
        observer.on_note(note)
    heartbeat = settings.heartbeat if "://" in storage_url else 0  # journal files have no heartbeats
    storage = open_storage(storage_url, heartbeat or None, settings.grace_period)
    name = settings.study or default_study_name(settings.task, data_source)
    sampler = make_sampler(settings.sampler, settings.seed, space)
    pruner = make_pruner(settings.pruner, settings.epochs)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=task.direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
    except Exception as exc:
        raise StorageError(
            f"cannot create or load study '{name}' in {redact(storage_url)}: {first_line(exc)}"
        ) from None
    config = {
        "task": task.name, "data": data_cfg.to_dict(), "space": space.raw, "space_source": space.source,
        "epochs": settings.epochs, "metric": task.metric, "direction": task.direction,
        "sampler": settings.sampler, "pruner": settings.pruner, "seed": settings.seed,
        "heartbeat": heartbeat, "grace": settings.grace_period if heartbeat else None,
    }
    stored = _check_resume(study, config)
    return PreparedSearch(
        study=study, task=task, space=space, data_cfg=DataConfig(**stored["data"]), device=device,
        storage_url=storage_url, run_dir=out / name, heartbeat=heartbeat, notes=notes,
    )


def run_search(settings: SearchSettings, observer: Any = None) -> SearchResult:
    """Load the data once, create or resume the study, optimize, and write best.pt / best.json.

    ``settings.jobs > 1`` runs that many worker processes on the study (``automl.workers``). Ctrl-C
    ends the running trial(s) (marked failed, "interrupted"); the result then has
    ``interrupted=True``, or ``SearchInterrupted`` is raised when no trial has completed yet.
    """
    from automl.objective import Objective
    from automl.workers import InterruptGuard, SearchInterrupted, run_children, work, worker_id

    start = time.perf_counter()
    p = prepare_search(settings, observer)
    study, task = p.study, p.task
    if observer is not None and hasattr(observer, "set_direction"):
        observer.set_direction(task.direction, task.metric)
    if settings.jobs > 1:
        stats = run_children(
            study, p.storage_url, jobs=settings.jobs, trials=settings.trials, timeout=settings.timeout,
            out=settings.out, device=settings.device, seed=settings.seed, heartbeat=p.heartbeat,
            grace=settings.grace_period if p.heartbeat else None, observer=observer,
        )
        bundle = task.load_data(p.data_cfg).to(p.device)
    else:
        bundle = task.load_data(p.data_cfg).to(p.device)
        with InterruptGuard() as guard:
            objective = Objective(
                task, bundle, p.space, epochs=settings.epochs, device=p.device, seed=settings.seed,
                ckpt_dir=p.run_dir / "trials", observer=observer, guard=guard, worker=worker_id(),
            )
            stats = work(study, objective, n_trials=settings.trials, timeout=settings.timeout, guard=guard,
                         on_trial_end=observer.on_trial_end if observer is not None else None)
    result = finalize_best(study, task, bundle, p.data_cfg, p.run_dir, p.storage_url, settings, start, p.device,
                           retrain=not stats.interrupted)
    if result is None:
        c = counts(study)
        raise SearchInterrupted(
            f"interrupted: no trial of study '{study.study_name}' has completed with kept weights yet "
            f"({c['total']} trials: {c['pruned']} pruned, {c['failed']} failed); run the same command again to resume"
        )
    result.interrupted = stats.interrupted
    result.jobs = settings.jobs
    result.notes = p.notes
    return result


def default_data(task: str) -> str:
    return {"image": "digits", "tabular": "wine", "text": ""}.get(task, "")


def check_space_fits_task(space: Space, task: Any) -> None:
    """Every parameter of the space must reach the model builder or the training loop."""
    from automl.exceptions import SearchSpaceError
    from automl.train import TRAIN_PARAMS

    known = set(task.model_params) | set(TRAIN_PARAMS)
    unknown = [n for n in space.names if n not in known]
    if unknown:
        raise SearchSpaceError(
            f"{space.source}: parameter '{unknown[0]}' is not used by the {task.name} task "
            f"(known: {', '.join(sorted(known))})"
        )


def finalize_best(
    study: Any, task: Any, bundle: Any, data_cfg: Any, run_dir: Path, storage_url: str,
    settings: Any, start: float, device: Any, retrain: bool = True,
) -> SearchResult | None:
    """Write best.pt / best.json for the study's best trial, evaluated once on the test split.

    The best trial's weights come from its kept checkpoint; when it is missing (the trial ran on
    another machine) the trial is retrained with the same parameters and seed, or, with
    ``retrain=False``, nothing is written and None is returned (also when no trial completed).

    Processes on one machine take a file lock and decide *inside* it by the study's best, as the
    storage says now, so when two workers finish at once the last writer writes the newest best.
    """
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".best.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _finalize_locked(study, task, bundle, data_cfg, run_dir, storage_url, settings, start, device,
                                    retrain)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _finalize_locked(
    study: Any, task: Any, bundle: Any, data_cfg: Any, run_dir: Path, storage_url: str,
    settings: Any, start: float, device: Any, retrain: bool,
) -> SearchResult | None:
    import torch

    from automl.artifacts import atomic_write_json, make_checkpoint, save_checkpoint
    from automl.models import build_from_arch
    from automl.objective import trial_checkpoint_path
    from automl.train import evaluate, fit, predict_logits, scores, train_config_from_params

    c = counts(study)
    try:
        best = study.best_trial
    except ValueError:
        if not retrain:
            return None
        raise TrainingError(
            f"no trial of study '{study.study_name}' completed ({c['pruned']} pruned, {c['failed']} failed); "
            f"try more --epochs or --trials, or --pruner none"
        ) from None
    ckpt_path = trial_checkpoint_path(run_dir / "trials", best.number)
    if not retrain and not ckpt_path.exists():
        return None
    if ckpt_path.exists():
        kept = load_checkpoint_plain(ckpt_path)
        arch, params = kept["arch"], kept["params"]
        model = build_from_arch(arch)
        model.load_state_dict(kept["state_dict"])
        model.to(device)
    else:
        params = dict(best.params)
        arch = task.arch_from_params(params, bundle.meta)
        torch.manual_seed(settings.seed + best.number)
        model = build_from_arch(arch)
        epochs = int(best.user_attrs.get("epochs") or settings.epochs)
        cfg = train_config_from_params(params, epochs=epochs, device=str(device), seed=settings.seed + best.number)
        fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, cfg,
            task.loss_fn(cfg.label_smoothing), task.metric_fn(), task.augment_fn(bundle.meta))
    loss_fn, metric_fn = task.loss_fn(0.0), task.metric_fn()
    val_loss, val_metric = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    test_logits = predict_logits(model, bundle.x_test)  # one pass: the metric and the stored predictions
    test_loss, test_metric = scores(test_logits, bundle.y_test, loss_fn, metric_fn)
    test_predictions = _test_predictions(test_logits, bundle)
    metrics = {
        "metric": task.metric,
        f"val_{task.metric}": val_metric, "val_loss": val_loss,
        f"test_{task.metric}": test_metric, "test_loss": test_loss,
        "sizes": bundle.sizes(),
    }
    preprocess = dict(bundle.meta["preprocess"])
    meta = {k: v for k, v in bundle.meta.items() if k != "preprocess"}
    ckpt = make_checkpoint(
        task=task.name, arch=arch, model=model.cpu(), preprocess={**preprocess, **meta},
        data=data_cfg.to_dict(), metrics=metrics, params=params, study=study.study_name, trial=best.number,
        extra={"storage": redact(storage_url)},
    )
    best_pt = run_dir / "best.pt"
    save_checkpoint(best_pt, ckpt)
    best_json = run_dir / "best.json"
    atomic_write_json(best_json, {
        "study": study.study_name, "task": task.name, "trial": best.number, "value": best.value,
        "params": params, "metrics": metrics, "arch": arch, "data": data_cfg.to_dict(),
        "best_pt": str(best_pt), "counts": c, "test_predictions": test_predictions,
    })
    # The report draws the confusion matrix from this; the study is the one place every worker sees.
    study.set_user_attr("best_test", {"trial": best.number, "metric": task.metric, "value": test_metric,
                                      **test_predictions})
    _drop_stale_trial_checkpoints(study, run_dir / "trials", keep=best.number)
    return SearchResult(
        study=study.study_name, storage=storage_url, task=task.name, metric=task.metric,
        direction=task.direction, best_trial=best.number, best_value=float(best.value),
        test_metric=float(test_metric), best_pt=str(best_pt), best_json=str(best_json), counts=c,
        params=params, seconds=elapsed_since(start), device=str(device),
    )


def load_checkpoint_plain(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _drop_stale_trial_checkpoints(study: Any, ckpt_dir: Path, keep: int) -> None:
    """Delete kept weights of finished trials that are not the best (running ones stay)."""
    from optuna.trial import TrialState

    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.RUNNING}
    for f in ckpt_dir.glob("trial-*.pt"):
        try:
            n = int(f.stem.split("-", 1)[1])
        except ValueError:
            continue
        if n != keep and n in finished:
            f.unlink(missing_ok=True)


def _test_predictions(test_logits: Any, bundle: Any) -> dict[str, Any]:
    """The best model's test-split predictions from its test logits: ``y_true``, ``y_pred`` (class
    indices or values) and ``classes`` (empty for regression)."""
    logits = test_logits.cpu()
    classes = list(bundle.meta.get("classes") or [])
    if classes:
        y_pred = logits.argmax(dim=1).tolist()
    else:
        y_pred = [round(float(v), 6) for v in logits.reshape(-1).tolist()]
    y_true = bundle.y_test.cpu().reshape(-1).tolist()
    return {"y_true": y_true, "y_pred": y_pred, "classes": classes}
