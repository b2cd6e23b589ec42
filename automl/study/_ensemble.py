"""best.pt as an ensemble of the search's own trials, built once at the end of ``automl search``.

The candidates' kept validation predictions (``automl.search.ensemble``) are combined by greedy
ensemble selection; when the ensemble scores better on validation than the best single trial (both
scored the same way, on the same predictions), its members are rebuilt from their kept weights into
one ``automl.models.ensemble`` module, timed again when the study has a latency budget (over it: not
used), scored once on the test split and written as best.pt. The study attribute ``ensemble`` records
the outcome for the leaderboard either way. ``--no-ensemble`` skips all of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.exceptions import ArtifactError
from automl.study._best import Best, _chosen, _kept_model, _started, _write, store_best
from automl.study._run import StudyRun


def write_ensemble(run: StudyRun, best: Best, retrain: bool) -> tuple[Best, str | None]:
    """Make best.pt the ensemble when it beats ``best`` (what ``write_best`` wrote) on validation:
    (what best.pt holds now, one line for the user or None when there was nothing to combine)."""
    from filelock import FileLock

    if run.task.ensemble_unsupported:  # (the task says why: e.g. scores on different scales)
        return best, None
    with FileLock(run.run_dir / ".best.lock"):
        return _build(run, best, retrain)


def latency_cap(run: StudyRun) -> float | None:
    """The most milliseconds the ensemble may take on the study's latency target: ``--max-latency-ms``;
    with a latency objective and no budget, the slowest Pareto-front member's latency (the ensemble must
    not be slower than every trade-off the search offers); None: no cap."""
    spec = run.latency
    if spec is not None and spec.max_latency_ms is not None:
        return float(spec.max_latency_ms)
    if "latency" in run.objectives:
        front = [t.user_attrs.get("latency_ms") for t in run.study.best_trials]
        known = [float(v) for v in front if v is not None]
        return max(known) if known else None
    return None


def _candidates(run: StudyRun, chosen: Any, y: np.ndarray, classes: int | None) -> list[tuple[Any, np.ndarray]]:
    """(trial, kept predictions) of every candidate with both its weights and its predictions here,
    the study's chosen best first, then best value first."""
    from optuna.trial import TrialState

    from automl.search.ensemble import candidate_numbers, load_predictions, predictions_path
    from automl.search.moo import maximizes
    from automl.search.objective import trial_checkpoint_path

    default, maximize = run.task.default_model, maximizes(run.study)
    done = run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    numbers = candidate_numbers(done, maximize, lambda t: str(t.params.get("model", default)))
    ordered = sorted((t for t in done if t.number in numbers),
                     key=lambda t: (t.number != chosen.number, -t.values[0] if maximize else t.values[0], t.number))
    out = []
    ckpt_dir = run.run_dir / "trials"
    for t in ordered:
        preds = load_predictions(predictions_path(ckpt_dir, t.number), len(y), classes)
        if preds is not None and trial_checkpoint_path(ckpt_dir, t.number).is_file():
            out.append((t, preds))
    return out


def _build(run: StudyRun, best: Best, retrain: bool) -> tuple[Best, str | None]:
    import json

    import torch

    from automl.search.ensemble import metric_scorer, select, weights_of
    from automl.search.moo import maximizes

    task, bundle = run.task, run.bundle
    regression = not task.metric_spec.labels
    y_t = torch.cat([bundle.y_train, bundle.y_val]) if run.cv else bundle.y_val
    y = y_t.cpu().numpy()
    classes = None if regression else int(bundle.meta["num_classes"])
    chosen = _chosen(run)
    rows = _candidates(run, chosen, y, classes)
    if len(rows) < 2 or rows[0][0].number != chosen.number:
        return best, None
    cap = latency_cap(run)
    maximize = maximizes(run.study)
    score = metric_scorer(task.metric_fn(), y, regression)
    preds = np.stack([p for _, p in rows])
    counts = select(preds, score, maximize, y=None if regression else y,
                    latencies=[t.user_attrs.get("latency_ms") for t, _ in rows], max_latency_ms=cap)
    picked = [i for i in range(len(rows)) if counts[i]]
    weights = weights_of(counts)
    single = score(preds[0])
    what = "OOF" if run.cv else "val"
    record: dict[str, Any] = {
        "trials": [rows[i][0].number for i in picked],
        "families": [str(rows[i][0].params.get("model", task.default_model)) for i in picked],
        "weights": [round(float(w), 6) for w in weights], "candidates": len(rows),
        "val": None, "test": None, "used": False, "latency_cap_ms": cap,
        "best_single": {"trial": chosen.number, "val": single},
        "base": {"trial": chosen.number, "trial_started": _started(chosen), "value": chosen.values[0]},
    }
    if len(picked) < 2:
        run.study.set_user_attr("ensemble", record)
        return _single(run, best, chosen, retrain), (
            f"ensemble selection over {len(rows)} candidates kept trial {chosen.number} alone")
    avg = np.tensordot(weights, preds[picked], axes=1).astype(np.float32)
    value = score(avg)
    record["val"] = value
    if not (value > single if maximize else value < single):
        run.study.set_user_attr("ensemble", record)
        return _single(run, best, chosen, retrain), (
            f"ensemble of {len(picked)} trials: {what} {task.metric} {value:.4f}, not better than trial "
            f"{chosen.number}'s {single:.4f}; best.pt is the single trial")
    stored = json.loads((run.run_dir / "best.json").read_text()) if (run.run_dir / "best.json").is_file() else {}
    old = stored.get("ensemble") if isinstance(stored.get("ensemble"), dict) else {}
    if old and (old.get("trials"), old.get("weights"), old.get("base")) == (
            record["trials"], record["weights"], record["base"]):  # best.pt holds this ensemble already
        return best, f"best.pt: the ensemble of trials {record['trials']} (unchanged)"
    # the best member: the study's best single trial when picked, else the heaviest (compress times it)
    lead = picked.index(0) if 0 in picked else int(np.argmax(weights))
    try:
        model, arch = _assemble(run, [rows[i][0] for i in picked], weights, regression, lead)
    except ArtifactError as exc:  # a member's kept weights are unusable (its best.pt was retrained, say)
        run.study.set_user_attr("ensemble", record)
        return _single(run, best, chosen, retrain), f"no ensemble: a member's kept weights are unusable ({exc})"
    latency: dict[str, Any] = {}
    if run.latency is not None:
        from automl.runtime.latency import measure

        m = measure(model, task.example_input(bundle.meta, 1), run.latency.target)
        latency = {"latency": {**run.latency.to_dict(), "measured": m.to_attrs()}}
        record["latency_ms"] = m.latency_ms
        if cap is not None and m.latency_ms > cap:
            run.study.set_user_attr("ensemble", record)
            return _single(run, best, chosen, retrain), (
                f"ensemble of {len(picked)} trials measured {m.latency_ms:.4g} ms, over the {cap:g} ms cap; "
                f"best.pt is the single trial {chosen.number}")
    record["used"] = True
    note = (f"best.pt: ensemble of {len(picked)} trials {record['trials']} (weights {record['weights']}): "
            f"{what} {task.metric} {value:.4f} against the best single trial {chosen.number}'s {single:.4f}"
            + (f"; {record['latency_ms']:.4g} ms on the latency target" if "latency_ms" in record else ""))
    params = {"model": "ensemble"}  # the members and weights: best.json's ``ensemble`` and the arch
    written = store_best(run, model, arch, params, trial=chosen.number, started=_started(chosen), value=value,
                         notes=list(best.notes), latency=latency, ensemble=record)
    run.study.set_user_attr("ensemble", {**record, "test": written.test_metric})
    return written, note


def _single(run: StudyRun, best: Best, chosen: Any, retrain: bool) -> Best:
    """best.pt back to the single best trial when it held an ensemble that no longer wins."""
    import json

    path = run.run_dir / "best.json"
    try:
        held = "ensemble" in json.loads(path.read_text())
    except (OSError, ValueError):
        held = False
    if not held:
        return best
    return _write(run, chosen, retrain) or best


def _assemble(run: StudyRun, trials: list[Any], weights: np.ndarray, regression: bool,
              lead: int) -> tuple[Any, dict[str, Any]]:
    """The ensemble module of ``trials``' kept models with ``weights``, and its arch (``best_member``:
    the index of ``lead``, the member ``compress`` compares the ensemble's latency with)."""
    import torch

    from automl.models import build_from_arch
    from automl.models.ensemble import ensemble_arch
    from automl.search.objective import trial_checkpoint_path

    members = [_kept_model(trial_checkpoint_path(run.run_dir / "trials", t.number)) for t in trials]
    out = 1 if regression else int(run.bundle.meta["num_classes"])
    arch = ensemble_arch([a for _, a, _ in members], out, regression, trials=[t.number for t in trials],
                         member_families=[str(a["family"]) for _, a, _ in members], best_member=lead)
    model = build_from_arch(arch)
    with torch.no_grad():
        for slot, (member, _, _) in zip(model.members, members, strict=True):
            slot.load_state_dict(member.state_dict(), strict=True)
        model.weights.copy_(torch.from_numpy(np.asarray(weights, dtype=np.float32)))
    return model.eval(), arch
