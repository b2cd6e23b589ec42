"""Where the search stands: every model family's best trial against a fast classic reference model
fitted on exactly the same split (train on the training split, scored on validation and test).

The references are the defaults an ML engineer would try first; each task owns its own
(``Task.reference_model``, where ``Task.has_reference``):

- tabular classification / regression: scikit-learn's ``HistGradientBoosting{Classifier,Regressor}``
  with default settings (``random_state=0``) on the task's encoded features (embedded categoricals
  passed as categorical features);
- text: TF-IDF over the task's own tokens (unigrams and bigrams of the vocabulary ids) + logistic
  regression;
- image: none (a classic model on raw pixels is no useful yardstick).

The reference is fitted once per study, at the start of a new search, and kept in the study's user
attribute ``reference``; the leaderboard (study user attribute ``leaderboard``) is rebuilt at the end
of each search from the study's trials, so ``automl report`` shows it too.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from automl.tasks import gap_text

if TYPE_CHECKING:
    from automl.data.bundle import DataBundle
    from automl.tasks import Task

#: a --timeout shorter than this skips the reference (it would eat a budget that small)
MIN_TIMEOUT_FOR_REFERENCE_S = 60.0
#: the reference is skipped on more training rows than this (its fit would take minutes on a CPU)
MAX_REFERENCE_ROWS = 2_000_000


def reference_scores(task: Task, bundle: DataBundle) -> dict[str, Any] | None:
    """Fit the task's classic reference (``Task.reference_model``) on the bundle's training split;
    its validation and test scores in the task's metric, or None when the task has no reference
    (image) or the data is too large for a quick fit."""
    if not task.has_reference or len(bundle.y_train) > MAX_REFERENCE_ROWS:
        return None
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    y_val, y_test = bundle.y_val.detach().cpu().numpy(), bundle.y_test.detach().cpu().numpy()
    # One thread: scikit-learn's OpenMP pool fights PyTorch's still-spinning one for the cores
    # (automl/models/hgb.py measured 28 s against 0.3 s for one fit on 2 cores).
    with threadpool_limits(limits=1):
        fitted = task.reference_model(bundle)
        if fitted is None:
            return None
        name, predict = fitted
        val = task.score(predict(bundle.x_val), y_val)
        test = task.score(predict(bundle.x_test), y_test)
    return {"name": name, "metric": task.metric, "val": round(val, 6), "test": round(test, 6),
            "seconds": round(time.perf_counter() - start, 2)}


def ensure_reference(run: Any, timeout: float | None) -> tuple[dict[str, Any] | None, str | None]:
    """The study's reference, fitted now when the study has none yet: (reference, a note for the user).

    Skipped (None, why) under a --timeout shorter than ``MIN_TIMEOUT_FOR_REFERENCE_S``."""
    study = run.study
    stored = study.user_attrs.get("reference")
    if stored:
        return stored, None
    if not run.task.has_reference:
        return None, None
    if timeout is not None and timeout < MIN_TIMEOUT_FOR_REFERENCE_S:
        return None, (f"no classic reference model: --timeout {timeout:g} is under "
                      f"{MIN_TIMEOUT_FOR_REFERENCE_S:g} s")
    ref = reference_scores(run.task, run.bundle)
    if ref is None:
        return None, None
    study.set_user_attr("reference", ref)
    return ref, (f"reference {ref['name']}: val {ref['metric']} {ref['val']:.4f}, "
                 f"test {ref['test']:.4f} ({ref['seconds']:.1f} s)")


def leaderboard(study: Any, task_name: str, default_model: str, metric: str, direction: str,
                best_test: dict[str, Any] | None = None, tests: dict[int, float] | None = None) -> dict[str, Any]:
    """Every family's best completed trial (validation score, trial counts), the ensemble of trials
    (study attribute ``ensemble``: its members count as its trials; test only when best.pt is it) and
    the reference, best first. The study's best trial carries its test score (``best_test``: the study user attribute);
    ``tests`` maps other trial numbers to theirs (the family bests whose weights were kept)."""
    import optuna

    maximize = direction == "maximize"
    per: dict[str, dict[str, Any]] = {}
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    for t in study.get_trials(deepcopy=False, states=ended):  # not the queued firsts a later run will take
        fam = str(t.params.get("model", default_model or "model"))
        row = per.setdefault(fam, {"name": fam, "kind": "family", "trials": 0, "complete": 0,
                                   "best_trial": None, "val": None, "test": None})
        row["trials"] += 1
        value = t.values[0] if t.values else None  # the metric, in a multi-objective study too
        if t.state != optuna.trial.TrialState.COMPLETE or value is None or not math.isfinite(value):
            continue
        row["complete"] += 1
        if row["val"] is None or (value > row["val"] if maximize else value < row["val"]):
            row["val"], row["best_trial"] = float(value), t.number
    bt = best_test or {}
    for row in per.values():
        if bt.get("trial") is not None and row["best_trial"] == bt.get("trial"):
            row["test"] = bt.get("value")
        elif tests and row["best_trial"] in tests:
            row["test"] = round(float(tests[row["best_trial"]]), 6)
    rows = list(per.values())
    ens = study.user_attrs.get("ensemble")
    if isinstance(ens, dict) and ens.get("val") is not None:  # automl.study._ensemble: built, used or not
        rows.append({"name": "ensemble", "kind": "ensemble", "trials": len(ens.get("trials") or []),
                     "complete": len(ens.get("trials") or []), "best_trial": None, "val": ens["val"],
                     "test": ens.get("test"), "members": list(ens.get("trials") or []), "used": bool(ens.get("used"))})
    ref = study.user_attrs.get("reference")
    if ref:
        rows.append({"name": "reference", "kind": "reference", "model": ref["name"], "trials": None,
                     "complete": None, "best_trial": None, "val": ref["val"], "test": ref["test"],
                     "seconds": ref.get("seconds")})

    def key(r: dict[str, Any]) -> float:
        v = r["val"]
        if v is None:
            return math.inf
        return -v if maximize else v

    rows.sort(key=key)
    return {"task": task_name, "metric": metric, "direction": direction, "rows": rows}


def compare_note(board: dict[str, Any]) -> str | None:
    """One line: where the best network stands against the reference on the test split."""
    rows = board["rows"]
    ref = next((r for r in rows if r["kind"] == "reference"), None)
    best = next((r for r in rows if r["kind"] in ("family", "ensemble") and r["test"] is not None), None)  # by val
    if ref is None or best is None:
        return None
    metric, maximize = board["metric"], board["direction"] == "maximize"
    who = (f"ensemble of trials {best.get('members')}" if best["kind"] == "ensemble"
           else f"{best['name']}, trial {best['best_trial']}")
    diff = best["test"] - ref["test"]
    if abs(diff) <= 1e-6 * max(1.0, abs(ref["test"])):  # float32 against float64 of the same score
        return (f"leaderboard: the best model ({who}) scores test {metric} "
                f"{best['test']:.4f}, level with the reference {ref['model']}")
    how = gap_text(metric, diff, ref["test"])  # accuracy: points; rmse: per cent of the reference
    ahead = (diff > 0) == maximize
    return (f"leaderboard: the best model ({who}) scores test {metric} "
            f"{best['test']:.4f}, {how} the reference {ref['model']} ({ref['test']:.4f})"
            f"{'' if ahead else '; the search has not caught up with it yet (more --timeout or --trials)'}")
