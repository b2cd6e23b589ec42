"""Storage URLs, samplers and pruners by name, create/load/resume a study, run it, keep the best."""

from __future__ import annotations

import logging
import re
import time
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
        return p.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 4))
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


def open_storage(url: str) -> Any:
    """An Optuna storage object for a resolved URL; StorageError with one line when unreachable."""
    import optuna

    try:
        if "://" not in url:  # journal file
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url))
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except Exception as exc:  # sqlalchemy OperationalError, ImportError of a DB driver, …
        raise StorageError(f"cannot open storage {redact(url)}: {first_line(exc)}") from None


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
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{task}-{base}").strip("-")


def silence_optuna() -> None:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)


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


def run_search(settings: SearchSettings, observer: Any = None) -> SearchResult:
    """Load the data once, create or resume the study, optimize, and write best.pt / best.json."""
    import optuna

    from automl.objective import Objective, TrialFailedError
    from automl.space import resolve_space
    from automl.tasks import DataConfig, get_task

    start = time.perf_counter()
    silence_optuna()
    task = get_task(settings.task)
    space = resolve_space(settings.space, settings.task)
    check_space_fits_task(space, task)
    data_source = settings.data or default_data(settings.task)
    data_cfg = DataConfig(
        source=data_source, seed=settings.seed, target=settings.target, image_size=settings.image_size,
        problem=settings.problem,
    )
    device = resolve_device(settings.device)
    out = Path(settings.out)
    storage_url = resolve_storage(settings.storage, out)
    storage = open_storage(storage_url)
    name = settings.study or default_study_name(settings.task, data_source)
    sampler = make_sampler(settings.sampler, settings.seed, space)
    pruner = make_pruner(settings.pruner, settings.epochs)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=task.direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
    except Exception as exc:
        raise StorageError(f"cannot create or load study '{name}' in {redact(storage_url)}: {first_line(exc)}") from None
    config = {
        "task": task.name, "data": data_cfg.to_dict(), "space": space.raw, "space_source": space.source,
        "epochs": settings.epochs, "metric": task.metric, "direction": task.direction,
    }
    stored = _check_resume(study, config)
    data_cfg = DataConfig(**stored["data"])
    bundle = task.load_data(data_cfg).to(device)
    run_dir = out / name
    ckpt_dir = run_dir / "trials"
    objective = Objective(
        task, bundle, space, epochs=settings.epochs, device=device, seed=settings.seed,
        ckpt_dir=ckpt_dir, observer=observer,
    )
    if observer is not None and hasattr(observer, "set_direction"):
        observer.set_direction(task.direction, task.metric)
    callbacks = [lambda _study, trial: observer.on_trial_end(trial)] if observer is not None else []
    study.optimize(
        objective, n_trials=settings.trials, timeout=settings.timeout,
        catch=(TrialFailedError,), callbacks=callbacks, gc_after_trial=False,
    )
    return finalize_best(study, task, bundle, data_cfg, run_dir, storage_url, settings, start, device)


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
    settings: SearchSettings, start: float, device: Any,
) -> SearchResult:
    """Write best.pt / best.json for the study's best trial, evaluated once on the test split.

    The best trial's weights come from its kept checkpoint; when it is missing (the trial ran on
    another machine) the trial is retrained with the same parameters and seed.
    """
    import torch

    from automl.artifacts import atomic_write_json, load_checkpoint, make_checkpoint, save_checkpoint
    from automl.models import build_from_arch
    from automl.objective import trial_checkpoint_path
    from automl.train import evaluate, fit, train_config_from_params

    c = counts(study)
    try:
        best = study.best_trial
    except ValueError:
        raise TrainingError(
            f"no trial of study '{study.study_name}' completed ({c['pruned']} pruned, {c['failed']} failed); "
            f"try more --epochs or --trials, or --pruner none"
        ) from None
    ckpt_path = trial_checkpoint_path(run_dir / "trials", best.number)
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
    test_loss, test_metric = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    test_predictions = _test_predictions(model, bundle)
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
    load_checkpoint(best_pt)  # a written checkpoint must load back with weights_only=True
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


def _test_predictions(model: Any, bundle: Any) -> dict[str, Any]:
    """The best model's test-split predictions: ``y_true``, ``y_pred`` (class indices or values)
    and ``classes`` (empty for regression)."""
    from automl.train import predict_logits

    logits = predict_logits(model, bundle.x_test).cpu()
    classes = list(bundle.meta.get("classes") or [])
    if classes:
        y_pred = logits.argmax(dim=1).tolist()
    else:
        y_pred = [round(float(v), 6) for v in logits.reshape(-1).tolist()]
    y_true = bundle.y_test.cpu().reshape(-1).tolist()
    return {"y_true": y_true, "y_pred": y_pred, "classes": classes}
