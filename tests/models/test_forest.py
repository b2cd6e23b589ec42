"""The forest families (``automl/models/forest.py``: ``rf`` and ``extratrees``): the tensor module gives
scikit-learn's ``predict_proba`` / ``predict`` (missing values included), ONNX Runtime gives the
module's, the size is bounded before a fit and before a stored arch is built, a forged checkpoint is
refused, the deadline is looked at between chunks of trees, and the objective fits them directly."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError, DeadlineReached
from automl.models import build_from_arch, get_model
from automl.models import forest as forest_mod
from automl.models.forest import Forest, estimator_kwargs, fit_forest, forest_from_sklearn

FAMILIES = {"rf": ("RandomForestClassifier", "RandomForestRegressor"),
            "extratrees": ("ExtraTreesClassifier", "ExtraTreesRegressor")}


def _table(kind: str, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic float32 rows with 10% missing values, a 0/1 column and an integer code column, and a
    target of ``kind``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 4] = rng.integers(0, 2, n)
    x[:, 5] = rng.integers(0, 7, n)
    score = x[:, 0] - 0.5 * x[:, 1] + 0.8 * (x[:, 5] % 3) + 0.3 * rng.normal(size=n)
    x[rng.random(x.shape) < 0.1] = np.nan
    if kind == "regression":
        return x, (50.0 + 10.0 * score).astype(np.float32)
    if kind == "binary":
        return x, (score > np.median(score)).astype(np.int64)
    return x, np.digitize(score, np.quantile(score, [0.25, 0.5, 0.75])).astype(np.int64)


def _fit(family: str, kind: str, **kw: Any) -> tuple[Any, Forest, np.ndarray, np.ndarray]:
    import sklearn.ensemble

    x, y = _table(kind)
    out = {"binary": 2, "multiclass": 4, "regression": 1}[kind]
    cls = getattr(sklearn.ensemble, FAMILIES[family][kind == "regression"])
    est = fit_forest(cls, x, y, {"n_estimators": 23, "random_state": 0, "max_leaf_nodes": 64, **kw})
    arch, state = forest_from_sklearn(est, family, x.shape[1], out)
    model = Forest(arch)
    model.load_state_dict(state, strict=True)
    return est, model.eval(), x, y


@pytest.mark.parametrize(("family", "kind"), list(itertools.product(FAMILIES, ["binary", "multiclass"])))
def test_probabilities_equal_predict_proba_with_missing_values(family: str, kind: str) -> None:
    est, model, x, _ = _fit(family, kind)
    assert np.isnan(x).any() and len(est.estimators_) == 23 and model.trees == 23
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    ref = est.predict_proba(x)
    assert probs.shape == ref.shape == (len(x), 2 if kind == "binary" else 4)
    assert np.abs(probs - ref).max() <= 1e-5
    assert (probs.argmax(1) == est.predict(x)).mean() >= 0.99  # ties aside, the same predictions
    nan_rows = np.full((3, x.shape[1]), np.nan, np.float32)  # every split's missing-value branch
    with torch.no_grad():
        got = torch.softmax(model(torch.from_numpy(nan_rows)), dim=1).numpy()
    assert np.abs(got - est.predict_proba(nan_rows)).max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_regression_equals_predict_in_target_units(family: str) -> None:
    est, model, x, y = _fit(family, "regression", max_leaf_nodes=None, max_depth=None)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    ref = est.predict(x)
    assert got.shape == (len(x), 1)
    assert np.abs(got[:, 0] - ref).max() <= 1e-5 * np.abs(ref).max()
    assert abs(float(got.mean()) - float(y.mean())) < 0.1 * float(y.std())  # target units


def test_a_class_missing_from_training_gets_probability_zero() -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _table("multiclass")
    keep = y != 2
    est = fit_forest(RandomForestClassifier, x[keep], y[keep], {"n_estimators": 5, "random_state": 0})
    arch, state = forest_from_sklearn(est, "rf", 6, 4)
    model = Forest(arch)
    model.load_state_dict(state)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    assert probs.shape == (len(x), 4) and probs[:, 2].max() <= 1e-8
    assert np.abs(probs[:, [0, 1, 3]] - est.predict_proba(x)).max() <= 1e-5
    with pytest.raises(ValueError, match="not ids of the 2 classes"):
        forest_from_sklearn(est, "rf", 6, 2)


def test_chunked_fit_equals_one_fit_and_the_deadline_is_looked_at_between_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _table("multiclass")
    chunked = fit_forest(RandomForestClassifier, x, y, {"n_estimators": 25, "random_state": 0})  # 10, 10, 5
    whole = RandomForestClassifier(n_estimators=25, random_state=0).fit(x, y)
    assert len(chunked.estimators_) == 25
    assert np.abs(chunked.predict_proba(x) - whole.predict_proba(x)).max() <= 1e-12

    with pytest.raises(DeadlineReached):  # a deadline already passed: no tree is fitted
        fit_forest(RandomForestClassifier, x, y, {"n_estimators": 25}, deadline=-1.0)
    fits: list[int] = []
    real_fit = RandomForestClassifier.fit
    monkeypatch.setattr(RandomForestClassifier, "fit",
                        lambda self, *a, **k: (fits.append(self.n_estimators), real_fit(self, *a, **k))[1])
    ticks = iter(range(100))  # a fake clock: one second per look
    with pytest.raises(DeadlineReached):
        fit_forest(RandomForestClassifier, x, y, {"n_estimators": 100, "random_state": 0}, deadline=2.5,
                   clock=lambda: float(next(ticks)))
    assert fits == [10, 20, 30]  # looked at 0, 1, 2 (fit a chunk each), then 3: past the deadline


def test_onnx_runtime_equals_the_module(tmp_path: Path) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session

    for family, kind in (("rf", "multiclass"), ("extratrees", "regression")):
        _, model, x, _ = _fit(family, kind)
        path = export_onnx(model, torch.zeros(1, x.shape[1]), tmp_path / f"{family}.onnx", {"automl.task": "tabular"})
        sess = session(path)
        for rows in (x[:1], x[:7], x):  # the batch axis is dynamic
            got = sess.run(["logits"], {"input": rows})[0]
            with torch.no_grad():
                ref = model(torch.from_numpy(rows)).numpy()
            assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_kwargs_are_sklearn_defaults_within_the_caps() -> None:
    kw = estimator_kwargs({}, seed=3, regression=False)
    assert kw == {"random_state": 3, "n_estimators": 100, "min_samples_leaf": 1, "max_features": "sqrt",
                  "max_leaf_nodes": forest_mod.DEFAULT_LEAVES, "max_depth": forest_mod.FIT_MAX_DEPTH}
    assert estimator_kwargs({"forest_max_features": "default"}, 0, regression=True)["max_features"] == 1.0
    kw = estimator_kwargs({"forest_n_estimators": 50.0, "forest_max_depth": 8, "forest_max_features": 0.5}, 0, False)
    assert kw["n_estimators"] == 50 and isinstance(kw["n_estimators"], int) and kw["max_depth"] == 8
    for bad in ({"forest_max_features": "cube"}, {"forest_max_features": 1.5}, {"forest_n_estimators": 0},
                {"forest_min_samples_leaf": 2.5}, {"forest_max_leaf_nodes": 1}):
        with pytest.raises(ValueError, match="forest"):
            estimator_kwargs(bad, 0, False)


@pytest.mark.parametrize("bad", [
    {"n_trees": 10**9}, {"n_nodes": 10**9}, {"n_trees": 2000, "n_nodes": 4000}, {"depth": 10**6},
    {"num_features": 10**12}, {"out_features": 10**9}, {"n_trees": -1}, {"n_nodes": "63"}, {"kind": "binary"},
    {"kind": "regression"}, {"out_features": 5000, "n_trees": 100, "n_nodes": 100}, {"depth": 7},
])
def test_build_refuses_a_forged_or_oversized_arch_before_allocating(bad: dict[str, Any]) -> None:
    arch = {"family": "rf", "kind": "classification", "num_features": 6, "out_features": 4, "n_trees": 3,
            "n_nodes": 7, "depth": 2, **bad}
    with pytest.raises(ValueError, match="rf arch"):
        get_model("rf").build(arch)
    with pytest.raises(ArtifactError, match="incomplete or invalid"):
        build_from_arch(arch)


def test_a_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    from automl.artifacts import model_from_checkpoint

    _, model, _, _ = _fit("extratrees", "binary")
    arch = {"family": "extratrees", "kind": "classification", "num_features": 6, "out_features": 2,
            "n_trees": model.trees, "n_nodes": model.left.numel() // model.trees, "depth": model.depth}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model_from_checkpoint({"arch": arch, "state_dict": state})  # the real one loads
    for key, value in (("left", 10**9), ("feature", 6), ("left", -1)):
        forged = {k: v.clone() for k, v in state.items()}
        forged[key][0] = value
        with pytest.raises(ArtifactError, match=f"extratrees buffer '{key}'"):
            model_from_checkpoint({"arch": arch, "state_dict": forged})
    for huge in ({**arch, "n_trees": 10**8}, {**arch, "n_trees": 1000, "n_nodes": 100_000}):
        with pytest.raises(ArtifactError, match="extratrees arch"):  # refused before anything is allocated
            model_from_checkpoint({"arch": huge, "state_dict": state})


def test_fit_direct_refuses_an_oversized_forest_before_fitting(monkeypatch: pytest.MonkeyPatch,
                                                               task_bundles: dict[str, Any]) -> None:
    _, bundle = task_bundles["tabular"]
    monkeypatch.setattr(forest_mod, "fit_forest", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(ValueError, match="rf with these parameters: 3000 trees of 8191 nodes"):
        get_model("rf").fit_direct({"forest_n_estimators": 3000}, bundle, seed=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_objective_fits_directly_and_keeps_the_weights(family: str, tmp_path: Path) -> None:
    from types import SimpleNamespace

    import optuna

    from automl.artifacts import model_from_checkpoint
    from automl.search.objective import Objective, trial_checkpoint_path
    from automl.search.space import parse_space
    from automl.tasks import DataConfig, get_task

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source="wine", seed=0))
    space = parse_space({"params": {"model": family, "forest_n_estimators": 15,
                                    "forest_min_samples_leaf": {"type": "int", "low": 1, "high": 3}}})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    run = SimpleNamespace(task=task, bundle=bundle, space=space, epochs=5, device=torch.device("cpu"), seed=0,
                          run_dir=tmp_path, trial_attrs={}, cv=0, latency=None, objectives=(), score="none")
    study.optimize(Objective(run), n_trials=1)
    t = study.trials[0]
    assert t.state.name == "COMPLETE" and t.user_attrs["fit"] == "direct" and t.value > 0.85
    kept = torch.load(trial_checkpoint_path(tmp_path / "trials", 0), weights_only=True)
    assert kept["arch"]["family"] == family and kept["arch"]["n_trees"] == 15
    model = model_from_checkpoint(kept)
    with torch.no_grad():
        acc = float((model(bundle.x_val).argmax(1) == bundle.y_val).float().mean())
    assert acc == pytest.approx(t.value, abs=1e-7)  # the value is the module's own

    study.optimize(Objective(run, deadline=0.0), n_trials=1)  # the study's deadline has passed
    pruned = study.trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["prune_reason"].startswith("deadline:")


def test_a_space_beyond_what_the_forests_build_is_refused() -> None:
    from automl.exceptions import SearchSpaceError
    from automl.search.space import parse_space

    trees = {"type": "int", "low": 10, "high": 10**6}
    space = {"params": {"model": ["rf", "extratrees"], "forest_n_estimators": trees}}
    with pytest.raises(SearchSpaceError, match=r"'forest_n_estimators': range \[10, 1000000\] is outside what "
                       r"model families 'rf', 'extratrees' can build: the allowed range is \[1, 10000\]"):
        parse_space(space, task="tabular")
    leaves = {"params": {"model": "rf", "forest_max_leaf_nodes": [64, 100_000]}}
    with pytest.raises(SearchSpaceError, match=r"value 100000 is outside what model family 'rf' can build"):
        parse_space(leaves, task="tabular")
