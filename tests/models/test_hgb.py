"""The gradient-boosting family (``automl/models/hgb.py``): the tensor module gives scikit-learn's
HistGradientBoosting outputs (binary, multiclass and regression, with missing values), ONNX Runtime
gives the module's, a forged arch or forged buffers are refused before use, and the objective fits it
directly (one report, user attrs, kept weights, the deadline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError, DeadlineReached
from automl.models import build_from_arch, get_model
from automl.models.hgb import HGB, ensemble_from_sklearn, fit_estimator


def _table(kind: str, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic float32 rows with 10% missing values, a 0/1 indicator-like column and an integer
    code column (what the encoded tabular matrix holds), and a target of ``kind``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 4] = rng.integers(0, 2, n)  # a one-hot column
    x[:, 5] = rng.integers(0, 7, n)  # an embedding id
    score = x[:, 0] - 0.5 * x[:, 1] + 0.8 * (x[:, 5] % 3) + 0.3 * rng.normal(size=n)
    x[rng.random(x.shape) < 0.1] = np.nan
    if kind == "regression":
        return x, (50.0 + 10.0 * score).astype(np.float32)
    if kind == "binary":
        return x, (score > np.median(score)).astype(np.int64)
    return x, np.digitize(score, np.quantile(score, [0.25, 0.5, 0.75])).astype(np.int64)


def _fit(kind: str, **kw: Any) -> tuple[Any, HGB, np.ndarray, np.ndarray]:
    x, y = _table(kind)
    out = {"binary": 2, "multiclass": 4, "regression": 1}[kind]
    est = fit_estimator(kind, x, y, {"max_iter": 80, "random_state": 0, **kw})
    arch, state = ensemble_from_sklearn(est, x.shape[1], out)
    model = HGB(arch)
    model.load_state_dict(state, strict=True)
    return est, model.eval(), x, y


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_probabilities_equal_predict_proba_with_missing_values(kind: str) -> None:
    est, model, x, _ = _fit(kind)
    assert np.isnan(x).any()
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    ref = est.predict_proba(x)
    assert probs.shape == ref.shape == (len(x), 2 if kind == "binary" else 4)
    assert np.abs(probs - ref).max() <= 1e-5
    # rows that are all missing take the trees' missing-value branches everywhere
    nan_rows = np.full((3, x.shape[1]), np.nan, np.float32)
    with torch.no_grad():
        got = torch.softmax(model(torch.from_numpy(nan_rows)), dim=1).numpy()
    assert np.abs(got - est.predict_proba(nan_rows)).max() <= 1e-5


def test_regression_equals_predict_in_target_units() -> None:
    est, model, x, y = _fit("regression", max_leaf_nodes=63, max_depth=None)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    ref = est.predict(x)
    assert got.shape == (len(x), 1)
    assert np.abs(got[:, 0] - ref).max() <= 1e-5 * np.abs(ref).max()
    assert abs(float(got.mean()) - float(y.mean())) < 0.1 * float(y.std())  # target units, not standardised


def test_chunked_fit_equals_one_fit_and_stops_at_the_deadline() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _table("multiclass")
    chunked = fit_estimator("multiclass", x, y, {"max_iter": 120, "random_state": 0})  # 3 chunks of 50, 50, 20
    whole = HistGradientBoostingClassifier(max_iter=120, random_state=0).fit(x, y)
    assert chunked.n_iter_ == whole.n_iter_ == 120
    assert np.abs(chunked.predict_proba(x) - whole.predict_proba(x)).max() <= 1e-12
    import time

    with pytest.raises(DeadlineReached):
        fit_estimator("multiclass", x, y, {"max_iter": 120}, deadline=time.monotonic() - 1)


def test_onnx_runtime_equals_the_module(tmp_path: Path) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session

    _, model, x, _ = _fit("multiclass")
    path = export_onnx(model, torch.zeros(1, x.shape[1]), tmp_path / "hgb.onnx", {"automl.task": "tabular"})
    sess = session(path)
    for rows in (x[:1], x[:7], x):  # the batch axis is dynamic
        got = sess.run(["logits"], {"input": rows})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(rows)).numpy()
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-5


@pytest.mark.parametrize("bad", [
    {"n_iter": 10**9}, {"n_nodes": 10**9}, {"n_iter": 90_000, "n_nodes": 60_000}, {"depth": 10**6},
    {"num_features": 10**12}, {"out_features": 10**9}, {"n_iter": -1}, {"n_nodes": "63"}, {"kind": "forest"},
    {"kind": "binary", "out_features": 3},
])
def test_build_refuses_a_forged_arch_before_allocating(bad: dict[str, Any]) -> None:
    arch = {"family": "hgb", "kind": "multiclass", "num_features": 6, "out_features": 4, "n_iter": 3,
            "n_nodes": 7, "depth": 2, **bad}
    with pytest.raises(ValueError, match="hgb arch"):
        get_model("hgb").build(arch)
    with pytest.raises(ArtifactError, match="incomplete or invalid"):
        build_from_arch(arch)


def test_a_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    from automl.artifacts import model_from_checkpoint

    _, model, _, _ = _fit("binary")
    arch = {"family": "hgb", "kind": "binary", "num_features": 6, "out_features": 2,
            "n_iter": model.n_iter, "n_nodes": model.left.numel() // model.trees, "depth": model.depth}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model_from_checkpoint({"arch": arch, "state_dict": state})  # the real one loads
    for key, value in (("left", 10**9), ("feature", 6), ("left", -1)):
        forged = {k: v.clone() for k, v in state.items()}
        forged[key][0] = value
        with pytest.raises(ArtifactError, match=f"hgb buffer '{key}'"):
            model_from_checkpoint({"arch": arch, "state_dict": forged})
    forged = {k: v.clone() for k, v in state.items()}
    forged["threshold"][-1] = -np.inf  # the last node (a leaf pointing at itself) could step past the end
    with pytest.raises(ArtifactError, match="end of the table"):
        model_from_checkpoint({"arch": arch, "state_dict": forged})
    huge = {**arch, "n_iter": 10**8}  # shapes no longer match: refused on the meta device, nothing allocated
    with pytest.raises(ArtifactError):
        model_from_checkpoint({"arch": huge, "state_dict": state})


def test_objective_fits_directly_reports_once_and_keeps_the_weights(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import optuna

    from automl.artifacts import model_from_checkpoint
    from automl.search.objective import Objective, trial_checkpoint_path
    from automl.search.space import parse_space
    from automl.tasks import DataConfig, get_task

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source="wine", seed=0))
    space = parse_space({"params": {"model": "hgb", "hgb_max_iter": 30,
                                    "hgb_learning_rate": {"type": "float", "low": 0.05, "high": 0.2}}})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    run = SimpleNamespace(task=task, bundle=bundle, space=space, epochs=5, device=torch.device("cpu"), seed=0,
                          run_dir=tmp_path, trial_attrs={}, cv=0, latency=None, objectives=(), score="none")
    objective = Objective(run)
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state.name == "COMPLETE" and t.intermediate_values == {1: t.value}
    assert t.user_attrs["fit"] == "direct" and t.user_attrs["epochs"] == 1
    (record,) = t.user_attrs["history"]
    assert set(record) == {"epoch", "train_loss", "val_loss", "val_metric", "seconds"}
    assert record["val_metric"] == pytest.approx(t.value) and t.value > 0.85
    kept = torch.load(trial_checkpoint_path(tmp_path / "trials", 0), weights_only=True)
    assert kept["arch"]["family"] == "hgb" and kept["arch"]["n_iter"] == 30
    model = model_from_checkpoint(kept)
    with torch.no_grad():
        acc = float((model(bundle.x_val).argmax(1) == bundle.y_val).float().mean())
    assert acc == pytest.approx(t.value, abs=1e-7)  # the value is the module's own

    late = Objective(run, deadline=0.0)
    study.optimize(late, n_trials=1)
    pruned = study.trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["prune_reason"].startswith("deadline:")


def test_budget_estimates_ignore_directly_fitted_trials() -> None:
    from automl.search.budget import BudgetWatch

    class Trees:
        user_attrs = {"seconds": 30.0, "epochs": 1, "fit": "direct"}

    class Net:
        user_attrs = {"seconds": 2.0, "epochs": 4}

    watch = BudgetWatch(trials=8, epochs=4, timeout=3)
    for trial in (Trees(), Net()):
        watch.trial_started()
        watch.trial_ended(trial)
    assert watch.ended == 2 and watch.trial_seconds == [2.0] and watch.trial_epochs == [4]
    (note,) = watch.final_notes()
    assert "0.5 s per epoch x 4 epochs = 2.0 s a trial" in note  # a 30 s tree fit is not "30 s per epoch"
