"""The CatBoost family (``automl/models/catboost.py``): the tensor module gives CatBoost's
``predict_proba`` / ``predict`` (missing values included, both NaN modes), ONNX Runtime gives the
module's, best.pt round-trips with ``weights_only``, the size is bounded before a fit and before a
stored arch is built, a forged checkpoint is refused, the deadline is looked at every iteration, and
the objective fits it directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError, DeadlineReached
from automl.models import build_from_arch, get_model
from automl.models import catboost as cb_mod
from automl.models.catboost import CatBoost, estimator_kwargs, fit_catboost, model_from_catboost

OUT = {"binary": 2, "multiclass": 4, "regression": 1}


def _table(kind: str, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


def _fit(kind: str, **kw: Any) -> tuple[Any, CatBoost, np.ndarray, np.ndarray]:
    x, y = _table(kind)
    est = fit_catboost(kind, x[:300], y[:300], {"iterations": 40, "depth": 5, "random_seed": 0,
                                                "early_stopping_rounds": 100, **kw}, val=(x[300:], y[300:]))
    arch, state = model_from_catboost(est, x.shape[1], OUT[kind])
    model = CatBoost(arch)
    model.load_state_dict(state, strict=True)
    return est, model.eval(), x, y


def _run(model: CatBoost, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("nan_mode", ["Min", "Max"])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_probabilities_equal_predict_proba_with_missing_values(kind: str, nan_mode: str) -> None:
    est, model, x, _ = _fit(kind, nan_mode=nan_mode)
    assert np.isnan(x).any() and model.trees == est.tree_count_ >= 10
    nan_rows = np.full((3, x.shape[1]), np.nan, np.float32)  # every split's missing-value side
    for rows in (x, nan_rows):
        probs = torch.softmax(torch.from_numpy(_run(model, rows)), dim=1).numpy()
        ref = est.predict_proba(rows)
        assert probs.shape == ref.shape == (len(rows), OUT[kind])
        assert np.abs(probs - ref).max() <= 1e-5
    assert (probs.argmax(1) == est.predict(nan_rows).reshape(-1)).all()


@pytest.mark.parametrize("nan_mode", ["Min", "Max"])
def test_regression_equals_predict_in_target_units(nan_mode: str) -> None:
    est, model, x, y = _fit("regression", nan_mode=nan_mode)
    got, ref = _run(model, x), est.predict(x)
    assert got.shape == (len(x), 1)
    assert np.abs(got[:, 0] - ref).max() <= 1e-5 * np.abs(ref).max()
    assert abs(float(got.mean()) - float(y.mean())) < 0.2 * float(y.std())  # target units
    nan_rows = np.full((2, x.shape[1]), np.nan, np.float32)
    assert np.abs(_run(model, nan_rows)[:, 0] - est.predict(nan_rows)).max() <= 1e-5 * np.abs(ref).max()


def test_trees_of_different_depths_are_padded() -> None:
    """CatBoost's export with a depth-1 tree beside a depth-2 one (as a model whose later trees found
    fewer useful splits): the padded level never moves a row off its leaf; leaf ids count the first
    split as bit 0; scale and bias apply to the sum."""
    import json

    class Exported:  # what model_from_catboost reads of a fitted model
        def get_all_params(self) -> dict[str, str]:
            return {"loss_function": "RMSE"}

        def save_model(self, path: str, format: str) -> None:
            floats = [{"feature_index": i, "flat_feature_index": i, "nan_value_treatment": "AsFalse"} for i in (0, 1)]
            split = [{"split_type": "FloatFeature", "float_feature_index": f, "border": b} for f, b in
                     ((0, 0.5), (1, 0.0), (0, -1.0))]
            Path(path).write_text(json.dumps({
                "features_info": {"float_features": floats}, "scale_and_bias": [2.0, [0.5]],
                "oblivious_trees": [{"splits": split[:1], "leaf_values": [1.0, 2.0]},
                                    {"splits": split[1:], "leaf_values": [10.0, 20.0, 30.0, 40.0]}]}))

    arch, state = model_from_catboost(Exported(), 2, 1)
    assert arch["depth"] == 2 and arch["n_trees"] == 2
    model = CatBoost(arch)
    model.load_state_dict(state)
    x = np.array([[0.0, -1.0], [1.0, -1.0], [0.0, 1.0], [-2.0, 1.0], [np.nan, np.nan]], np.float32)
    # tree a: x0 > 0.5 -> leaf 1 (2) else 0 (1); tree b: bit 0 = x1 > 0, bit 1 = x0 > -1; NaN: bits 0
    # rows: a 1 + b 30, a 2 + b 30, a 1 + b 40, a 1 + b 20, a 1 + b 10; then x 2 + 0.5
    assert _run(model, x)[:, 0].tolist() == [62.5, 64.5, 82.5, 42.5, 22.5]


def test_onnx_runtime_equals_the_module(tmp_path: Path) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session

    for kind in ("multiclass", "regression"):
        _, model, x, _ = _fit(kind)
        path = export_onnx(model, torch.zeros(1, x.shape[1]), tmp_path / f"{kind}.onnx", {"automl.task": "tabular"})
        sess = make_session(path)
        for rows in (x[:1], x[:7], x):  # the batch axis is dynamic
            got, ref = sess.run(["logits"], {"input": rows})[0], _run(model, rows)
            assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_weights_only_round_trip(tmp_path: Path) -> None:
    est, model, x, _ = _fit("multiclass")
    arch = {"family": "catboost", "kind": "multiclass", "num_features": 6, "out_features": 4,
            "n_trees": model.trees, "depth": model.depth}
    torch.save({"arch": arch, "state_dict": model.state_dict()}, tmp_path / "m.pt")
    kept = torch.load(tmp_path / "m.pt", weights_only=True)
    again = build_from_arch(kept["arch"])
    again.load_state_dict(kept["state_dict"])
    assert np.array_equal(_run(again.eval(), x), _run(model, x))


@pytest.mark.parametrize("bad", [
    {"n_trees": 10**9}, {"depth": 17}, {"depth": 0}, {"n_trees": 100_000, "depth": 10},
    {"num_features": 10**12}, {"out_features": 10**9}, {"n_trees": -1}, {"depth": "6"}, {"kind": "binary"},
    {"kind": "regression"}, {"kind": "ranking"}, {"out_features": 5000, "n_trees": 100, "depth": 8},
])
def test_build_refuses_a_forged_or_oversized_arch_before_allocating(bad: dict[str, Any]) -> None:
    arch = {"family": "catboost", "kind": "multiclass", "num_features": 6, "out_features": 4, "n_trees": 3,
            "depth": 2, **bad}
    with pytest.raises(ValueError, match="catboost arch"):
        get_model("catboost").build(arch)
    with pytest.raises(ArtifactError, match="incomplete or invalid"):
        build_from_arch(arch)


def test_a_forged_checkpoint_is_refused() -> None:
    from automl.artifacts import model_from_checkpoint

    _, model, _, _ = _fit("binary")
    arch = {"family": "catboost", "kind": "binary", "num_features": 6, "out_features": 2,
            "n_trees": model.trees, "depth": model.depth}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model_from_checkpoint({"arch": arch, "state_dict": state})  # the real one loads
    for value in (6, -1, 10**9):
        forged = {k: v.clone() for k, v in state.items()}
        forged["feature"][0] = value
        with pytest.raises(ArtifactError, match="catboost buffer 'feature'"):
            model_from_checkpoint({"arch": arch, "state_dict": forged})
    with pytest.raises(ArtifactError, match="catboost arch"):  # refused before anything is allocated
        model_from_checkpoint({"arch": {**arch, "n_trees": 10**5, "depth": 16}, "state_dict": state})


def test_the_deadline_is_looked_at_before_the_fit_and_after_every_iteration() -> None:
    x, y = _table("binary")
    with pytest.raises(DeadlineReached):  # already passed: nothing is fitted
        fit_catboost("binary", x, y, {"iterations": 50}, deadline=-1.0, clock=lambda: 0.0)
    ticks: list[int] = []

    def clock() -> float:  # a fake clock: one second per look
        ticks.append(len(ticks))
        return float(len(ticks) - 1)

    with pytest.raises(DeadlineReached):
        fit_catboost("binary", x, y, {"iterations": 500, "random_seed": 0}, deadline=5.5, clock=clock)
    assert len(ticks) == 7  # 0 before the fit, 1..5 after iterations 1..5 (go on), 6: stop
    est = fit_catboost("binary", x, y, {"iterations": 30, "random_seed": 0}, deadline=1e9, clock=lambda: 0.0)
    assert est.tree_count_ == 30


def test_kwargs_are_catboost_defaults_with_early_stopping() -> None:
    assert estimator_kwargs({}, seed=3) == {"random_seed": 3, "early_stopping_rounds": cb_mod.EARLY_STOPPING_ROUNDS}
    kw = estimator_kwargs({"catboost_iterations": 200.0, "catboost_depth": 8, "catboost_learning_rate": 0.05,
                           "catboost_l2_leaf_reg": 3}, 0)
    assert kw["iterations"] == 200 and isinstance(kw["iterations"], int) and kw["learning_rate"] == 0.05
    assert isinstance(kw["l2_leaf_reg"], float)
    auto = estimator_kwargs({"catboost_auto_lr": True, "catboost_learning_rate": 0.05, "catboost_l2_leaf_reg": 5}, 0)
    assert "learning_rate" not in auto and "l2_leaf_reg" not in auto  # CatBoost picks a rate only with its L2
    for bad in ({"catboost_depth": 17}, {"catboost_iterations": 0}, {"catboost_iterations": 2.5},
                {"catboost_depth": True}):
        with pytest.raises(ValueError, match="catboost"):
            estimator_kwargs(bad, 0)


def test_fit_direct_refuses_an_oversized_model_before_fitting(monkeypatch: pytest.MonkeyPatch,
                                                             task_bundles: dict[str, Any]) -> None:
    _, bundle = task_bundles["tabular"]
    monkeypatch.setattr(cb_mod, "fit_catboost", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(ValueError, match="catboost arch: 90000 trees of depth 16"):
        get_model("catboost").fit_direct({"catboost_iterations": 90_000, "catboost_depth": 16}, bundle, seed=0)


def test_objective_fits_directly_and_keeps_the_weights(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import optuna

    from automl.artifacts import model_from_checkpoint
    from automl.search.objective import Objective, trial_checkpoint_path
    from automl.search.space import parse_space
    from automl.tasks import DataConfig, get_task

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source="wine", seed=0))
    space = parse_space({"params": {"model": "catboost", "catboost_iterations": 60, "catboost_auto_lr": False,
                                    "catboost_learning_rate": 0.1,
                                    "catboost_depth": {"type": "int", "low": 3, "high": 4}}}, task="tabular")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    run = SimpleNamespace(task=task, bundle=bundle, space=space, epochs=5, device=torch.device("cpu"), seed=0,
                          run_dir=tmp_path, trial_attrs={}, cv=0, latency=None, objectives=(), score="none")
    study.optimize(Objective(run), n_trials=1)
    t = study.trials[0]
    assert t.state.name == "COMPLETE" and t.user_attrs["fit"] == "direct" and t.value > 0.85
    kept = torch.load(trial_checkpoint_path(tmp_path / "trials", 0), weights_only=True)
    assert kept["arch"]["family"] == "catboost" and 1 <= kept["arch"]["n_trees"] <= 60
    assert kept["arch"]["depth"] == t.params["catboost_depth"]
    model = model_from_checkpoint(kept)
    with torch.no_grad():
        acc = float((model(bundle.x_val).argmax(1) == bundle.y_val).float().mean())
    assert acc == pytest.approx(t.value, abs=1e-7)  # the value is the module's own

    study.optimize(Objective(run, deadline=0.0), n_trials=1)  # the study's deadline has passed
    pruned = study.trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["prune_reason"].startswith("deadline:")


def test_the_tabular_space_enqueues_catboost_defaults_right_after_hgb() -> None:
    from automl.search.space import resolve_space

    firsts = resolve_space(None, "tabular").family_firsts()
    assert [f["model"] for f in firsts[:4]] == ["hgb", "catboost", "extratrees", "rf"]
    assert estimator_kwargs(firsts[1], 0) == {"random_seed": 0, "early_stopping_rounds": 100, "iterations": 1000,
                                              "depth": 6, "random_strength": 1.0}  # CatBoost's defaults, its own lr
    # CatBoost chooses its learning rate only when no L2 is given (else it falls back to 0.03)
    x, y = _table("binary")
    kw = {**estimator_kwargs(firsts[1], 0), "iterations": 20}
    assert fit_catboost("binary", x[:300], y[:300], kw, val=(x[300:], y[300:])).learning_rate_ > 0.1
    assert fit_catboost("binary", x[:300], y[:300], {**kw, "l2_leaf_reg": 3.0},
                        val=(x[300:], y[300:])).learning_rate_ == pytest.approx(0.03)


def test_a_space_beyond_what_catboost_builds_is_refused() -> None:
    from automl.exceptions import SearchSpaceError
    from automl.search.space import parse_space

    space = {"params": {"model": "catboost", "catboost_depth": {"type": "int", "low": 4, "high": 20}}}
    with pytest.raises(SearchSpaceError, match=r"'catboost_depth': range \[4, 20\] is outside what model family "
                       r"'catboost' can build: the allowed range is \[1, 16\]"):
        parse_space(space, task="tabular")
