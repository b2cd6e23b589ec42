"""best.pt / best.json: the study's best trial, evaluated once on the test split, kept current.

The trial loop calls ``write_best`` after every completed trial, so best.pt follows the study's
best as it changes and a killed search leaves a usable model; the end of a search calls it once
more. Processes on one machine take a file lock and decide *inside* it by the study's best as the
storage says now, so when two workers finish at once the last writer writes the newest best.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.search.objective_deadline import is_deadline_stopped
from automl.study._run import StudyRun
from automl.study.storage import counts, redact


@dataclass
class Best:
    """The best trial as best.json records it."""

    trial: int
    value: float
    test_metric: float
    params: dict[str, Any]
    best_pt: str
    best_json: str
    notes: list[str] = field(default_factory=list)


def write_best(run: StudyRun, *, retrain: bool, final: bool = True) -> Best | None:
    """Make ``<run_dir>/best.pt`` and ``best.json`` hold the study's best trial.

    Nothing is evaluated when they already hold it (``final`` then only refreshes the trial counts
    in best.json). The weights come from the trial's kept checkpoint; when it is missing (the trial
    ran on another machine) or unreadable, the trial is retrained with the same parameters and seed
    (``retrain=True``, said in ``notes``) or nothing is written and None is returned. None too when
    no trial has completed.
    """
    from filelock import FileLock

    run.run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(run.run_dir / ".best.lock"):
        try:
            best = _chosen(run)
        except ValueError:  # no completed trial
            return None
        current = _current(run, best)
        if current is not None:
            if final and current.get("counts") != (now := counts(run.study)):
                from automl.artifacts import atomic_write_json

                atomic_write_json(run.run_dir / "best.json", {**current, "counts": now})
            return _best_of(current, run.run_dir)
        start = time.monotonic()
        written = _write(run, best, retrain)
        if written is not None:
            run.write_seconds = max(run.write_seconds, time.monotonic() - start)
        return written


def _current(run: StudyRun, best: Any) -> dict[str, Any] | None:
    """best.json's contents when best.pt and best.json already hold ``best``; else None."""
    import json

    path = run.run_dir / "best.json"
    if not (run.run_dir / "best.pt").is_file() or not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key = (run.study.study_name, best.number, _started(best), best.values[0])
    same = (stored.get("study"), stored.get("trial"), stored.get("trial_started"), stored.get("value"))
    base = stored.get("ensemble", {}).get("base") if isinstance(stored.get("ensemble"), dict) else None
    if isinstance(base, dict):  # an ensemble built on this best (automl.study._ensemble) holds it still
        same = (stored.get("study"), base.get("trial"), base.get("trial_started"), base.get("value"))
    return stored if same == key else None


def _chosen(run: StudyRun) -> Any:
    """The trial best.pt holds: the study's best; on a multi-objective study the most accurate trial
    (a Pareto-front member), within the latency budget when the study has one. ValueError: none."""
    from automl.search.moo import pick_best

    spec = getattr(run, "latency", None)
    return pick_best(run.study, getattr(spec, "max_latency_ms", None))


def _started(trial: Any) -> str | None:
    """When the trial started: with the study and the number, it tells a trial from one of a study
    deleted and created again under the same name."""
    return trial.datetime_start.isoformat() if trial.datetime_start is not None else None


def _best_of(stored: dict[str, Any], run_dir: Path) -> Best:
    metric = stored["metrics"]["metric"]
    return Best(trial=int(stored["trial"]), value=float(stored["value"]),
                test_metric=float(stored["metrics"][f"test_{metric}"]), params=dict(stored["params"]),
                best_pt=str(run_dir / "best.pt"), best_json=str(run_dir / "best.json"),
                notes=[stored["threshold_note"]] if isinstance(stored.get("threshold_note"), str) else [])


def _kept_model(path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(model, arch, params) from a trial's kept checkpoint; ArtifactError when it cannot be used."""
    import torch

    from automl.artifacts import model_from_checkpoint
    from automl.exceptions import ArtifactError

    try:
        kept = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's message advises loading unsafely: never repeat it
        raise ArtifactError("not a readable PyTorch checkpoint") from None
    if not isinstance(kept, dict) or not isinstance(kept.get("arch"), dict) or "params" not in kept:
        raise ArtifactError("not a trial checkpoint of automl")
    return model_from_checkpoint(kept, "checkpoint"), kept["arch"], kept["params"]


def _trial_params(run: StudyRun, best: Any) -> dict[str, Any]:
    """The plain parameters the trial trained with: Optuna stores only the sampled ones, so the
    space's fixed values are added by sampling the space again with the trial's values."""
    import optuna

    from automl.search.space import sample

    try:
        return sample(optuna.trial.FixedTrial(dict(best.params)), run.space)
    except ValueError:  # the study was resumed with another space: the sampled values are what is known
        return dict(best.params)


def _retrain(run: StudyRun, best: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The best trial trained again from its parameters and seed: (model, arch, params)."""
    import torch

    from automl.models import build_from_arch
    from automl.train import fit, train_config_from_params

    bundle, task = run.bundle, run.task
    params = _trial_params(run, best)
    seed = run.seed + best.number
    family = task.model_family(params)
    if family.direct_fit:  # a tree ensemble: fitted again in one go, its arch from the fit
        model, arch = family.fit_direct(params, bundle, seed=seed)
        return model, arch, params
    arch = task.arch_from_params(params, bundle.meta)
    torch.manual_seed(seed)
    model = build_from_arch(arch)
    ran = int(best.user_attrs.get("epochs") or run.epochs)
    stopped = is_deadline_stopped(best)  # cut short: its schedule was for run.epochs, stopped after ``ran``
    cfg = train_config_from_params(params, epochs=run.epochs if stopped else ran, seed=seed)
    with contextlib.suppress(_EnoughEpochs):
        fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, cfg,
            task.loss_fn(cfg.label_smoothing), task.metric_fn(), task.augment_fn(bundle.meta),
            on_epoch=_stop_after(ran) if stopped else None)
    return model, arch, params


class _EnoughEpochs(Exception):
    """Raised by ``_stop_after`` to end a retraining at the epoch a deadline-stopped trial reached."""


def _stop_after(epochs: int) -> Any:
    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        if epoch >= epochs:
            raise _EnoughEpochs
    return on_epoch


def _write(run: StudyRun, best: Any, retrain: bool) -> Best | None:
    from automl.exceptions import ArtifactError
    from automl.search.objective import trial_checkpoint_path

    notes: list[str] = []
    ckpt_path = trial_checkpoint_path(run.run_dir / "trials", best.number)
    why = "its weights are not on this machine"
    if ckpt_path.exists():
        try:
            model, arch, params = _kept_model(ckpt_path)
            why = ""
        except ArtifactError as exc:
            why = f"its kept weights {ckpt_path} are unusable ({exc})"
    if why:
        if not retrain:
            return None
        notes.append(f"best trial {best.number}: {why}; retrained it from its parameters")
        model, arch, params = _retrain(run, best)
    return store_best(run, model, arch, params, trial=best.number, started=_started(best),
                      value=float(best.values[0]), values=list(best.values), notes=notes,
                      latency=_latency_extra(run, best))


def store_best(run: StudyRun, model: Any, arch: dict[str, Any], params: dict[str, Any], *, trial: int,
               started: str | None, value: float, notes: list[str], latency: dict[str, Any],
               ensemble: dict[str, Any] | None = None, values: list[float] | None = None) -> Best:
    """Score ``model`` on the validation and test splits (the test split once) and write best.pt and
    best.json. ``trial``/``started``/``value``: the trial it is (an ensemble: its best member's, and its
    own validation score); ``values``: the trial's objective values, for its lineage record;
    ``ensemble``: best.json's record of an ensemble (then the study attribute ``best_test`` keeps the
    best single trial's test figures, which the leaderboard shows)."""
    from automl.artifacts import atomic_write_json, make_checkpoint, save_checkpoint
    from automl.train import predict_logits, scores

    task, bundle = run.task, run.bundle
    model.to(run.device)
    loss_fn = task.loss_fn(0.0)
    val_logits = predict_logits(model, bundle.x_val)
    # binary f1 / balanced_accuracy / accuracy: the decision threshold that is best on validation
    # (not after --cv: the kept model was refitted on the validation rows, which would pick any threshold)
    threshold = None if run.cv else task.decision_threshold(val_logits, bundle.y_val, bundle.meta)
    if run.cv and task.uses_threshold(bundle.meta):
        notes.append(f"no decision threshold for {task.metric}: with --cv the kept model is refitted on the "
                     f"validation rows (run with --cv 0 to have one chosen on them); 0.5 applies")
    # a task defined elsewhere may take no threshold (its metric_fn() of old): asked only with one
    metric_fn = task.metric_fn() if threshold is None else task.metric_fn(threshold)
    val_loss, val_metric = scores(val_logits, bundle.y_val, loss_fn, metric_fn)
    test_logits = predict_logits(model, bundle.x_test)  # one pass: the metric and the stored predictions
    test_loss, test_metric = scores(test_logits, bundle.y_test, loss_fn, metric_fn)
    test_predictions = task.test_predictions(test_logits, bundle, threshold)
    metrics = {
        "metric": task.metric,
        f"val_{task.metric}": val_metric, "val_loss": val_loss,
        f"test_{task.metric}": test_metric, "test_loss": test_loss,
        "sizes": bundle.sizes(),
        **({"threshold": threshold, "positive_class": task.positive} if threshold is not None else {}),
    }
    if run.cv:  # the kept model was refitted on the validation rows too: its own val figures mean little
        metrics.update({f"val_{task.metric}": float(value), "val_loss": None, "cv_folds": run.cv,
                        f"val_{task.metric}_of_refit": val_metric})
    threshold_note = None
    if threshold is not None:
        positive = (bundle.meta.get("classes") or ["0", "1"])[task.positive]
        threshold_note = (f"decision threshold {threshold:.4f}: class {str(positive)[:40]!r} (the rarer, positive one) "
                     f"from this probability on, chosen on validation for {task.metric}; predict and serve apply it")
        notes.append(threshold_note)
    study = run.study
    trial_counts = counts(study)
    preprocess = dict(bundle.meta["preprocess"])
    if threshold is not None:  # predict and serve apply it (it travels in the ONNX metadata with the spec)
        preprocess["decision_threshold"] = threshold
        preprocess["positive_class"] = task.positive
    meta = {k: v for k, v in bundle.meta.items() if k != "preprocess"}
    ckpt = make_checkpoint(
        task=task.name, arch=arch, model=model.cpu(), preprocess={**preprocess, **meta},
        data=run.data_cfg.to_dict(), metrics=metrics, params=params, study=study.study_name, trial=trial,
        extra={"storage": redact(run.url), **latency,
               "lineage": _lineage(run, trial, started, value, values, params, metrics, trial_counts, notes,
                                   ensemble)},
    )
    best_pt, best_json = run.run_dir / "best.pt", run.run_dir / "best.json"
    save_checkpoint(best_pt, ckpt)
    atomic_write_json(best_json, {
        "study": study.study_name, "task": task.name, "trial": trial, "trial_started": started,
        "value": value,
        "params": params, "metrics": metrics, "arch": arch, "data": run.data_cfg.to_dict(),
        "best_pt": str(best_pt), "counts": trial_counts, "test_predictions": test_predictions,
        **({"threshold_note": threshold_note} if threshold_note else {}),
        **({"ensemble": ensemble} if ensemble is not None else {}),
    })
    if ensemble is None:
        # The report draws the confusion matrix from this; the study is the one place every worker sees.
        study.set_user_attr("best_test", {"trial": trial, "metric": task.metric, "value": test_metric,
                                          **({"threshold": threshold} if threshold is not None else {}),
                                          **test_predictions})
    _drop_stale_trial_checkpoints(study, run.run_dir / "trials", keep=trial, default_model=task.default_model)
    return Best(trial=trial, value=float(value), test_metric=float(test_metric), params=params,
                best_pt=str(best_pt), best_json=str(best_json), notes=notes)


def _lineage(run: StudyRun, trial: int, started: str | None, value: float, values: list[float] | None,
             params: dict[str, Any], metrics: dict[str, Any], trial_counts: dict[str, Any], notes: list[str],
             ensemble: dict[str, Any] | None = None) -> dict[str, Any]:
    """best.pt's lineage record: the search that chose it (sampler, trial pruner, epochs, seed, space,
    trial counts, the chosen parameters), its study and trial, the data fingerprint, its metrics. An
    ensemble names its best member as the trial (its own value is no trial's: not recorded as one)."""
    from automl.lineage import data_fingerprint, make_record

    config = run.study.user_attrs.get("automl") or {}
    settings = {k: config.get(k) for k in ("sampler", "pruner", "epochs", "seed", "cv", "objectives", "metric",
                                           "direction", "space_source", "latency", "score") if k in config}
    settings.update({"space": run.space.raw, "trials": trial_counts, "params": params, "retrained": bool(notes)})
    study: dict[str, Any] = {"storage": run.url, "name": run.study.study_name, "trial": trial, "trial_started": started}
    if ensemble is None:
        study.update(value=value, values=values or [value])
    else:
        settings["ensemble"] = ensemble
    return make_record("checkpoint", [{"step": "search", "settings": settings}], study=study,
                       data=data_fingerprint(run.bundle, run.data_cfg.to_dict()),
                       metrics={k: v for k, v in metrics.items() if k != "sizes"})


def _latency_extra(run: StudyRun, best: Any) -> dict[str, Any]:
    """best.pt's ``latency`` key: the study's budget and target, and the trial's measured figures."""
    if getattr(run, "latency", None) is None:
        return {}
    from automl.runtime.latency import checkpoint_latency

    return checkpoint_latency(run.latency, best)


def family_bests(study: Any, default_model: str) -> dict[str, Any]:
    """Model family -> its best completed trial (the leaderboard's rows)."""
    from optuna.trial import TrialState

    from automl.search.moo import maximizes

    maximize = maximizes(study)
    out: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not t.values:
            continue
        fam = str(t.params.get("model", default_model))
        cur = out.get(fam)
        if cur is None or (t.values[0] > cur.values[0] if maximize else t.values[0] < cur.values[0]):
            out[fam] = t
    return out


def _drop_stale_trial_checkpoints(study: Any, ckpt_dir: Path, keep: int, default_model: str = "") -> None:
    """Delete kept weights (and validation predictions) of finished trials that are neither the best,
    nor their family's best, nor an ensemble candidate (``automl.search.ensemble.candidate_numbers``);
    running ones stay; the family bests give the leaderboard its test scores."""
    from optuna.trial import TrialState

    from automl.search.ensemble import candidate_numbers
    from automl.search.moo import maximizes

    trials = study.get_trials(deepcopy=False)
    finished = {t.number for t in trials if t.state != TrialState.RUNNING}
    keep_all = {keep} | {t.number for t in family_bests(study, default_model).values()}
    keep_all |= candidate_numbers([t for t in trials if t.state == TrialState.COMPLETE], maximizes(study),
                                  lambda t: str(t.params.get("model", default_model)))
    if len(study.directions) > 1:  # a multi-objective study keeps its Pareto front's weights too
        keep_all |= {t.number for t in study.best_trials}
    for f in [*ckpt_dir.glob("trial-*.pt"), *ckpt_dir.glob("trial-*.val.npy")]:
        try:
            n = int(f.name.split("-", 1)[1].split(".", 1)[0])
        except ValueError:
            continue
        if n not in keep_all and n in finished:
            f.unlink(missing_ok=True)


def family_test_scores(run: StudyRun) -> dict[int, float]:
    """Trial number -> test score of each model family's best trial whose weights are kept here
    (the study's best is in best.json already; a family best without kept weights is left out)."""
    from automl.exceptions import ArtifactError
    from automl.search.objective import trial_checkpoint_path
    from automl.train import evaluate, predict_logits

    out: dict[int, float] = {}
    task = run.task
    try:
        best = _chosen(run).number
    except ValueError:
        return out
    _drop_stale_trial_checkpoints(run.study, run.run_dir / "trials", keep=best, default_model=task.default_model)
    for t in family_bests(run.study, task.default_model).values():
        path = trial_checkpoint_path(run.run_dir / "trials", t.number)
        if t.number == best or not path.exists():  # the best's test score is best.json's (no second pass)
            continue
        try:
            model, _, _ = _kept_model(path)
        except ArtifactError:
            continue
        bundle = run.bundle
        model.to(run.device)
        # each family at its own decision threshold (binary f1 ...), as best.pt is scored
        threshold = None if run.cv else task.decision_threshold(predict_logits(model, bundle.x_val), bundle.y_val,
                                                                bundle.meta)
        _, metric = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(0.0),
                             task.metric_fn() if threshold is None else task.metric_fn(threshold))
        out[t.number] = float(metric)
    return out
