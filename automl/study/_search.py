"""``automl search``: create or resume a study, run its trials here or in ``--jobs`` processes, and
write best.pt / best.json."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, SearchInterrupted, SearchSpaceError, StorageError, TrainingError
from automl.study._deadline import deadline_notes
from automl.study._settings import SearchSettings
from automl.study.storage import counts, first_line, open_storage, redact, silence_optuna, storage_for


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
    leaderboard: dict[str, Any] = field(default_factory=dict)  # automl.search.leaderboard.leaderboard()
    objectives: list[str] = field(default_factory=list)  # --objectives (several: a multi-objective study)
    front: list[dict[str, Any]] = field(default_factory=list)  # its Pareto front (automl.study._front)
    latency: dict[str, Any] | None = None  # automl.runtime.latency.budget_summary(): the budget, trials over it
    score: dict[str, Any] | None = None  # --score: the mode and the best trial's FP32 / quantized figures

    def to_json(self) -> dict[str, Any]:
        extra = {"objectives": self.objectives, "front": self.front} if self.objectives else {}
        return {
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
            "leaderboard": self.leaderboard,
            "latency": self.latency,
            **({"score": self.score} if self.score is not None else {}),
            **extra,
        }


def data_notes(run: Any) -> list[str]:
    """What the task inferred from the data (tabular: problem and column types), when it was loaded here."""
    if "bundle" not in run.__dict__:  # --jobs: the children loaded it
        return []
    return [str(n) for n in run.bundle.meta.get("notes", [])]


def default_study_name(task: str, data: str) -> str:
    from automl.data.files import strip_table_suffixes

    base = strip_table_suffixes(Path(data.rstrip("/")).name or data)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{task}-{base}").strip("-")


def check_space_fits_task(space: Any, task: Any) -> None:
    """Every parameter of the space must reach the model builder or the training loop."""
    from automl.train import TRAIN_PARAMS

    known = set(task.model_params) | set(TRAIN_PARAMS)
    unknown = [n for n in space.names if n not in known]
    if unknown:
        raise SearchSpaceError(
            f"{space.source}: parameter '{unknown[0]}' is not used by the {task.name} task "
            f"(known: {', '.join(sorted(known))})"
        )


def check_storage(settings: SearchSettings) -> str:
    """Resolve and open the search's storage once, so a bad URL fails before any progress display."""
    url, _ = storage_for(settings.storage, settings.jobs, Path(settings.out))
    open_storage(url)
    return url


def _normal(key: str, value: Any) -> Any:
    """A stored data config with the keys later versions added filled in by their defaults."""
    if key == "data" and isinstance(value, dict):
        from automl.data.bundle import DataConfig

        try:
            return DataConfig(**value).to_dict()
        except TypeError:
            return value
    return value


def _check_resume(study: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A resumed study keeps its task and data; a different one is a ConfigError."""
    stored = study.user_attrs.get("automl")
    if not stored:
        study.set_user_attr("automl", config)
        return config
    for key in ("task", "data"):
        if _normal(key, stored.get(key)) != _normal(key, config.get(key)):
            raise ConfigError(
                f"study '{study.study_name}' was created with {key}={stored.get(key)!r}, "
                f"not {config.get(key)!r}; use another --study name"
            )
    return stored


def _resume_latency(study: Any, stored: dict[str, Any], spec: Any) -> Any:
    """The study's latency spec: a resumed study keeps the budget and target it was created with (also
    when the command line gives none); a different one is a ConfigError (old trials were judged by it)."""
    from automl.runtime.latency import LatencySpec

    if spec is None:
        return LatencySpec.from_dict(stored.get("latency"))
    old = LatencySpec.from_dict(stored.get("latency"))
    if old != spec:
        raise ConfigError(
            f"study '{study.study_name}' was created with "
            f"{'latency budget ' + old.describe() if old else 'no latency budget'}, not {spec.describe()}; "
            f"use another --study name"
        )
    return spec


def _folds(settings: SearchSettings, task: Any, data_cfg: Any, bundle: Any) -> int:
    """Folds of cross-validation per trial: --cv, or automl.search.cv's rule on the training + validation rows."""
    from automl.search.cv import default_cv, resolve_folds

    if settings.cv is not None or not task.cross_validation or default_cv() is not None:
        return resolve_folds(settings.cv, task.name, 0)
    sizes = (bundle if bundle is not None else task.load_data(data_cfg)).sizes()
    return resolve_folds(None, task.name, sizes["train"] + sizes["val"])


def study_objective_kwargs(settings: SearchSettings, metric_direction: str, pruner: Any) -> dict[str, Any]:
    """``optuna.create_study`` keywords: one direction and the trial pruner, or, with several
    ``--objectives``, their directions and a pruner slot holding ``automl.search.moo.CostAwarePruner``
    (Optuna's pruners refuse multi-objective studies; the objective applies that one itself)."""
    from automl.search.moo import directions, is_multi, optuna_pruner

    if not is_multi(settings.objectives):
        return {"direction": metric_direction, "pruner": pruner}
    return {"directions": directions(settings.objectives, metric_direction),
            "pruner": optuna_pruner(settings.objectives, settings.pruner, settings.epochs, pruner)}


def check_resumed_objectives(study: Any, objectives: tuple[str, ...]) -> None:
    """A resumed study keeps the objectives it was created with (Optuna cannot change its directions)."""
    from automl.search.moo import is_multi

    stored = tuple((study.user_attrs.get("automl") or {}).get("objectives") or ())
    if is_multi(stored) != is_multi(objectives) or (is_multi(stored) and stored != objectives):
        had = ",".join(stored) if is_multi(stored) else "its metric only"
        raise ConfigError(f"study '{study.study_name}' was created with --objectives {had}, not "
                          f"{','.join(objectives) if is_multi(objectives) else 'the metric only'}; "
                          f"use another --study name")


def _resume_metric(study: Any, stored: dict[str, Any], settings: SearchSettings, task: Any) -> None:
    """A resumed study keeps the metric its trials were judged by: without ``--metric`` the task
    takes the stored one; a different ``--metric`` is a ConfigError."""
    old = stored.get("metric")
    if not old or old == task.metric:
        return
    if settings.metric is not None:
        raise ConfigError(f"study '{study.study_name}' was created with --metric {old}, not --metric {task.metric}; "
                          f"use another --study name")
    task.use_stored_metric(old)


def check_resumed_score(study: Any, score: str) -> None:
    """A resumed study keeps its ``--score`` (its trials' values were judged by it)."""
    stored = str((study.user_attrs.get("automl") or {}).get("score") or "none")
    if stored != score:
        raise ConfigError(f"study '{study.study_name}' was created with --score {stored}, not --score {score}; "
                          f"use another --study name")


def prepare_search(settings: SearchSettings, observer: Any = None, start: float | None = None) -> Any:
    """Create or resume the study and store the search configuration in its user attribute ``automl``
    (task, data, space, epochs, sampler, pruner, seed, heartbeat), which ``automl worker`` reads.
    Returns the ``StudyRun`` of this process, its data loaded unless ``settings.jobs > 1``."""
    import optuna

    from automl.data.bundle import DataConfig
    from automl.device import resolve_device
    from automl.search.space import resolve_space
    from automl.study._reaper import retry_callback, trial_attrs
    from automl.study._run import StudyRun
    from automl.study._samplers import enqueue_firsts, make_sampler
    from automl.study._trial_pruners import make_trial_pruner
    from automl.tasks import get_task

    start = time.monotonic() if start is None else start
    silence_optuna()
    task = get_task(settings.task)
    space = resolve_space(settings.space, settings.task)
    check_space_fits_task(space, task)
    data_source = settings.data or task.default_data
    data_cfg = DataConfig(
        source=data_source, seed=settings.seed, target=settings.target, image_size=settings.image_size,
        problem=settings.problem, categorical=tuple(settings.categorical), numeric=tuple(settings.numeric),
        test_source=settings.test_data, normal=tuple(settings.normal), contamination=settings.contamination,
    )
    task.choose_metric(settings.metric, settings.problem)  # --metric (checked again: settings may be built by hand)
    task.class_weight = settings.class_weight
    task.prepare(data_cfg)  # tabular: classification or regression decides the metric and direction
    from automl.search.moo import check_metric

    check_metric(settings.objectives, task.metric, task.name)
    device = resolve_device(settings.device)
    # The data loads before the study exists: unreadable data must not leave an empty study behind.
    # With --jobs the children load it (each on its own device).
    bundle = task.load_data(data_cfg).to(device) if settings.jobs == 1 else None
    if bundle is not None:
        task.bind(bundle)  # the metric must fit the data's kind (f1 on 5 classes): fails before any training
    folds = _folds(settings, task, data_cfg, bundle)
    out = Path(settings.out)
    url, note = storage_for(settings.storage, settings.jobs, out)
    if note and observer is not None and hasattr(observer, "on_note"):
        observer.on_note(note)
    heartbeat = settings.heartbeat if "://" in url else 0  # journal files have no heartbeats
    grace = settings.grace_period if heartbeat else None
    retry = retry_callback()
    storage = open_storage(url, heartbeat or None, grace, retry)
    name = settings.study or default_study_name(settings.task, data_source)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, load_if_exists=True,
            sampler=make_sampler(settings.sampler, settings.seed, space),
            # --cv: the trial pruner's steps are folds
            **study_objective_kwargs(settings, task.direction, make_trial_pruner(settings.pruner,
                                                                                 folds or settings.epochs)),
        )
    except Exception as exc:
        raise StorageError(f"cannot create or load study '{name}' in {redact(url)}: {first_line(exc)}") from None
    config = {
        "task": task.name, "data": data_cfg.to_dict(), "space": space.raw, "space_source": space.source,
        "epochs": settings.epochs, "metric": task.metric, "direction": task.direction,
        "sampler": settings.sampler, "pruner": settings.pruner, "seed": settings.seed,
        "heartbeat": heartbeat, "grace": grace, "cv": folds, "objectives": list(settings.objectives),
    }
    spec = settings.latency
    if spec is not None:
        config["latency"] = spec.to_dict()
    if settings.score != "none":
        config["score"] = settings.score
    if settings.class_weight != "none":
        config["class_weight"] = settings.class_weight
    if settings.metric is not None:  # an explicit --metric: binary f1 / balanced_accuracy / accuracy get a threshold
        config["decision_threshold"] = True
    stored = _check_resume(study, config)
    _resume_metric(study, stored, settings, task)
    task.class_weight = str(stored.get("class_weight") or settings.class_weight)
    task.tune_threshold = bool(stored.get("decision_threshold"))
    if bundle is not None:
        task.bind(bundle)  # again: a resumed study's own metric and class weights
    imbalance = task.imbalance_note(bundle) if bundle is not None else None
    if imbalance and observer is not None and hasattr(observer, "on_note"):
        observer.on_note(imbalance)
    check_resumed_objectives(study, settings.objectives)
    check_resumed_score(study, settings.score)
    latency = _resume_latency(study, stored, spec)
    if settings.sampler != "grid":  # a new study: every family gets a first trial, once per study
        enqueue_firsts(study, space.family_firsts())
    run = StudyRun(
        study=study, storage=storage, retry=retry, url=url, task=task, space=space,
        data_cfg=DataConfig(**stored["data"]), device=device, run_dir=out / name, epochs=settings.epochs,
        seed=settings.seed, trial_attrs=trial_attrs(grace), notes=[n for n in (note, imbalance) if n],
        deadline=None if settings.timeout is None else start + settings.timeout, cv=int(stored.get("cv") or 0),
        objectives=tuple(stored.get("objectives") or ()),
        latency=latency, score=settings.score,
    )
    if bundle is not None:  # the resume check made the stored data config equal to data_cfg
        run.__dict__["bundle"] = bundle  # where functools.cached_property keeps StudyRun.bundle
        from automl.study._family_race import races, record_chance

        if races(space, settings.sampler):
            record_chance(study, task, bundle)
    from automl.study._budget_sampler import install_budget_sampler

    install_budget_sampler(run, settings.sampler)
    return run


def run_search(settings: SearchSettings, observer: Any = None, start: float | None = None) -> SearchResult:
    """Create or resume the study, run its trials, and write best.pt / best.json.

    ``settings.jobs > 1`` runs that many worker processes on the study. ``settings.timeout`` is a
    deadline counted from ``start`` (a ``time.monotonic()`` value; default: now), e.g. when the
    command began: a trial still training then is kept at its last completed epoch (marked
    ``stopped = "deadline"``, eligible for best.pt), and best.pt is kept current after each trial, so
    what is left to do at the deadline is short (see README). ``settings.trials`` None: trials run
    until the deadline (or Ctrl-C).
    Ctrl-C ends the running trial(s) (marked failed, "interrupted"); the result then has
    ``interrupted=True``, or ``SearchInterrupted`` is raised when no trial has completed yet.
    """
    from automl.search.cv import CV_AUTO_ROWS, default_cv
    from automl.search.leaderboard import compare_note, ensure_reference, leaderboard
    from automl.study._best import family_test_scores, write_best
    from automl.study._jobs import run_children
    from automl.study._loop import run_trials

    start = time.monotonic() if start is None else start
    run = prepare_search(settings, observer, start)
    study, task = run.study, run.task
    # The classic reference (tabular: default gradient boosting; text: TF-IDF + logistic regression),
    # fitted once per study on the same split; inside the --timeout like everything else.
    _, ref_note = ensure_reference(run, settings.timeout)
    if ref_note and observer is not None and hasattr(observer, "on_note"):
        observer.on_note(ref_note)
    if observer is not None and hasattr(observer, "set_direction"):
        observer.set_direction(task.direction, task.metric)
    if run.cv:
        how = ("--cv" if settings.cv else "AUTOML_CV" if default_cv() is not None
               else f"the training + validation rows are under {CV_AUTO_ROWS}; --cv 0 turns it off")
        run.notes.append(f"{run.cv}-fold cross-validation per trial ({how}); the test split is not used")
        if observer is not None and hasattr(observer, "set_folds"):
            observer.set_folds(run.cv)
    from automl.tracking import open_tracker

    # --mlflow / --tensorboard: opened here (the study run exists before --jobs children look for it);
    # each process that runs trials logs its own
    tracker = open_tracker(run, settings.mlflow, settings.tensorboard)
    if tracker is not None:
        for note in tracker.notes:
            _note(observer, note)
    try:
        if settings.jobs > 1:
            stats = run_children(run, jobs=settings.jobs, trials=settings.trials, device=settings.device,
                                 out=settings.out, heartbeat=settings.heartbeat, grace=settings.grace_period,
                                 observer=observer, tracking={"mlflow": settings.mlflow,
                                                              "tensorboard": settings.tensorboard})
        else:
            stats = run_trials(run, n_trials=settings.trials,
                               observer=tracker.wrap(observer) if tracker is not None else observer)
    except BaseException:
        if tracker is not None:
            tracker.close()
        raise
    best = write_best(run, retrain=not stats.interrupted)
    if best is not None and settings.ensemble:
        from automl.study._ensemble import write_ensemble

        best, ensemble_note = write_ensemble(run, best, retrain=not stats.interrupted)
        if ensemble_note:
            run.notes.append(ensemble_note)
    c = counts(study)
    if best is None and tracker is not None:
        tracker.close()
    if best is None and not stats.interrupted:
        raise TrainingError(
            f"no trial of study '{study.study_name}' completed ({c['pruned']} pruned, {c['failed']} failed); "
            f"try more --epochs or --trials, or --pruner none"
        )
    if best is None:
        raise SearchInterrupted(
            f"interrupted: no trial of study '{study.study_name}' has completed with kept weights yet "
            f"({c['total']} trials: {c['pruned']} pruned, {c['failed']} failed); run the same command again to resume"
        )
    # a space that fixes ``model`` stores it in no trial's params: its family, not the task's default, names the row
    fixed_model = next((str(p.value) for p in run.space.params if p.name == "model" and p.type == "fixed"), None)
    board = leaderboard(study, task.name, fixed_model or task.default_model, task.metric, task.direction,
                        study.user_attrs.get("best_test"), family_test_scores(run))
    study.set_user_attr("leaderboard", board)
    versus = compare_note(board)
    objectives, front = _front_of(run, settings, stats.interrupted)
    latency = None
    if run.latency is not None:
        from automl.runtime.latency import budget_note, budget_summary

        latency = budget_summary(study, run.latency, best.trial)
        if run.latency.max_latency_ms is not None:  # --objectives latency alone times networks without a budget
            run.notes.append(budget_note(latency))
    score = None
    if run.score != "none":
        from automl.runtime.int8 import score_note, score_summary

        score = score_summary(study, run.score, best.trial)
        run.notes.append(score_note(score))
    result = SearchResult(
        study=study.study_name, storage=run.url, task=task.name, metric=task.metric, direction=task.direction,
        best_trial=best.trial, best_value=best.value, test_metric=best.test_metric, best_pt=best.best_pt,
        best_json=best.best_json, counts=c, params=best.params, seconds=round(time.monotonic() - start, 2),
        device=str(run.device), interrupted=stats.interrupted, jobs=settings.jobs,
        notes=run.notes + data_notes(run) + best.notes + deadline_notes(run, best.trial, settings.trials,
                                                                         settings.timeout)
        + ([versus] if versus else []), leaderboard=board,
        objectives=objectives, front=front,
        latency=latency, score=score,
    )
    result.notes.extend(_artifacts_and_tracking(run, best, result, tracker))
    return result


def _note(observer: Any, message: str) -> None:
    if observer is not None and hasattr(observer, "on_note"):
        observer.on_note(message)


def _artifacts_and_tracking(run: Any, best: Any, result: SearchResult, tracker: Any) -> list[str]:
    """best.pt as the study's Optuna artifact (optuna-dashboard lists it), and the study's summary
    in the trackers (MLflow: best.json, the search result, the best figures); notes of what failed.
    Neither can fail the search: its model is written already."""
    from automl.study.storage import first_line
    from automl.tracking import artifact_store_dir, upload_study_artifact

    notes: list[str] = []
    try:
        upload_study_artifact(run.study, run.storage, best.best_pt, artifact_store_dir(run.run_dir.parent))
    except Exception as exc:  # a full disk, a storage hiccup: the model is there, the dashboard link is not
        notes.append(f"best.pt was not registered as an Optuna artifact of the study: {first_line(exc)}")
    if tracker is None:
        return notes
    summary = run.run_dir / "search_result.json"
    try:
        from automl.artifacts import atomic_write_json

        atomic_write_json(summary, result.to_json())
    except OSError as exc:
        notes.append(f"cannot write {summary}: {exc}")
    tracker.finish(artifacts=[result.best_json, summary, run.run_dir / "report.html"],
                   metrics={f"best_{result.metric}": result.best_value, f"test_{result.metric}": result.test_metric,
                            "n_complete": result.counts["complete"], "n_pruned": result.counts["pruned"],
                            "n_failed": result.counts["failed"]},
                   tags={"best_trial": result.best_trial}, end=not result.interrupted)
    return notes + tracker.notes


def _front_of(run: Any, settings: SearchSettings, interrupted: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """A multi-objective study's objectives and Pareto front, its checkpoints written with --save-front."""
    from automl.search.moo import is_multi
    from automl.study._front import front_rows, save_front

    if not is_multi(run.objectives):
        return [], []
    rows = front_rows(run)
    if settings.save_front:
        run.notes.extend(save_front(run, rows, retrain=not interrupted))
    return list(run.objectives), rows
