"""The Pareto front of a multi-objective study as files: ``automl search --objectives … --save-front``
writes one best.pt-format checkpoint per front member, ``<run_dir>/front/trial-N.pt``.

The weights come from the trial's kept checkpoint (the objective keeps the weights of every trial
that joins the front, and the clean-up after best.pt keeps the front's), or, when they are not on
this machine, the trial is trained again from its parameters and seed (said in its ``notes``).
"""

from __future__ import annotations

from automl.study._run import StudyRun

#: one trial of the Pareto front: ``trial`` (its number), ``objectives`` and ``costs`` (name -> value);
#: ``save_front`` adds ``path`` (its best.pt-format file) and ``test_<metric>``
FrontRow = dict[str, object]


def front_rows(run: StudyRun) -> list[FrontRow]:
    """The front as plain rows (trial, objectives, measured costs), most accurate first; [] when the
    study has one objective."""
    from automl.search.moo import COST_ATTRS, is_multi, pareto_front

    if not is_multi(run.objectives):
        return []
    return [{"trial": t.number, "objectives": dict(zip(run.objectives, t.values, strict=True)),
             "costs": {k: t.user_attrs[k] for k in COST_ATTRS if k in t.user_attrs}}
            for t in pareto_front(run.study)]


def save_front(run: StudyRun, rows: list[FrontRow], *, retrain: bool = True) -> list[str]:
    """Write ``<run_dir>/front/trial-N.pt`` for each front row (adding ``path`` and the test metric to
    the row); stale files of trials no longer on the front are removed. Returns notes for the user."""
    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.exceptions import ArtifactError
    from automl.search.objective import trial_checkpoint_path
    from automl.study._best import _kept_model, _retrain
    from automl.study.storage import redact
    from automl.train import evaluate

    folder = run.run_dir / "front"
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    trials = {t.number: t for t in run.study.get_trials(deepcopy=False)}
    task, bundle = run.task, run.bundle
    loss_fn, metric_fn = task.loss_fn(0.0), task.metric_fn()
    for row in rows:
        t = trials[row["trial"]]
        kept = trial_checkpoint_path(run.run_dir / "trials", t.number)
        model = None
        if kept.exists():
            try:
                model, arch, params = _kept_model(kept)
            except ArtifactError:
                model = None
        if model is None:
            if not retrain:
                continue
            notes.append(f"front trial {t.number}: its weights are not on this machine; retrained it")
            model, arch, params = _retrain(run, t)
        model.to(run.device)
        val_loss, val_metric = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
        test_loss, test_metric = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
        metrics = {"metric": task.metric, f"val_{task.metric}": val_metric, "val_loss": val_loss,
                   f"test_{task.metric}": test_metric, "test_loss": test_loss, "sizes": bundle.sizes(),
                   "objectives": row["objectives"], "costs": row["costs"]}
        preprocess = dict(bundle.meta["preprocess"])
        meta = {k: v for k, v in bundle.meta.items() if k != "preprocess"}
        path = folder / f"trial-{t.number}.pt"
        save_checkpoint(path, make_checkpoint(
            task=task.name, arch=arch, model=model.cpu(), preprocess={**preprocess, **meta},
            data=run.data_cfg.to_dict(), metrics=metrics, params=params, study=run.study.study_name,
            trial=t.number, extra={"storage": redact(run.url)},
        ))
        row.update({"path": str(path), f"test_{task.metric}": float(test_metric)})
    on_front = {f"trial-{r['trial']}.pt" for r in rows}
    for f in folder.glob("trial-*.pt"):
        if f.name not in on_front:
            f.unlink(missing_ok=True)
    return notes
