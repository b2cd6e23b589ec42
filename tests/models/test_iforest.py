"""The isolation-forest family (``automl/models/iforest.py``): the tensor module gives scikit-learn's
``-score_samples`` (missing values and per-tree feature subsets included), ONNX Runtime gives the
module's, best.pt round-trips with ``weights_only``, the size is bounded before a fit and before a
stored arch is built, a forged checkpoint is refused, the deadline is looked at between chunks of
trees, and the reference is scikit-learn's default IsolationForest on exactly the rows given.

The anomaly task may not exist on this branch, so the family is fitted and exported directly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError, DeadlineReached
from automl.models import build_from_arch, get_model, list_models
from automl.models import iforest as iforest_mod
from automl.models.iforest import (
    IForest,
    average_path_length,
    estimator_kwargs,
    fit_iforest,
    fit_reference,
    iforest_from_sklearn,
    isolation_forest_reference,
)

F = 6


def _rows(n: int, seed: int, missing: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """float32 rows: normal noise, a 0/1 column, an integer code column, ``missing`` of the cells NaN."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(size=(n, F))).astype(np.float32)
    x[:, 4] = rng.integers(0, 2, n)
    x[:, 5] = rng.integers(0, 7, n)
    x[rng.random(x.shape) < missing] = np.nan
    return x


def _fit(x: np.ndarray, **params: Any) -> tuple[Any, IForest]:
    est = fit_iforest(x, estimator_kwargs(params, seed=3, n_rows=len(x)))
    arch, state = iforest_from_sklearn(est, x.shape[1])
    model = IForest(arch)
    model.load_state_dict(state, strict=True)
    return est, model.eval()


def _scores(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _needs_nan_support() -> None:
    """Skip unless scikit-learn's IsolationForest takes NaN (1.9 does; pyproject allows >= 1.3, whose
    IsolationForest refuses NaN: the module still walks NaN as each split says, the parity is untested)."""
    from sklearn.ensemble import IsolationForest

    try:
        IsolationForest(n_estimators=1).fit(np.array([[np.nan], [1.0], [2.0]]))
    except ValueError:
        pytest.skip("this scikit-learn's IsolationForest refuses NaN")


CASES = {
    "defaults": {},
    "half the features": {"iforest_max_features": 0.5},
    "bootstrap, 100 rows, 2 features": {"iforest_max_samples": 100, "iforest_bootstrap": True,
                                        "iforest_max_features": 0.34, "iforest_n_estimators": 40},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("train_missing", [0.0, 0.1])
def test_scores_equal_minus_score_samples_with_missing_values(case: str, train_missing: float) -> None:
    params = CASES[case]
    _needs_nan_support()
    est, model = _fit(_rows(700, 0, train_missing), **params)
    feats = float(params.get("iforest_max_features", 1.0))
    assert {t.n_features_in_ for t in est.estimators_} == {max(1, int(feats * F))}  # subsampled per tree
    x = _rows(500, 1, missing=0.2, scale=2.0)
    x[:3] = np.nan  # every split's missing-value branch
    x[3, 0], x[4, 1] = np.inf, -np.inf
    got = _scores(model, x)
    ref = -est.score_samples(x)
    assert got.shape == (len(x),) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-6  # float32 rounding of a score in (0, 1)
    assert got.min() > 0.0 and got.max() < 1.0 and got.std() > 0.01  # real scores, not a constant


def test_missing_values_follow_the_trees_not_the_imputed_mean() -> None:
    """Trees fitted on NaN rows send NaN their own way: scoring NaN equals scikit-learn, and differs
    from scoring the column's mean (what the tabular preprocessing imputes before a search)."""
    _needs_nan_support()
    x = _rows(700, 0, missing=0.3)
    est, model = _fit(x)
    probe = _rows(200, 2)
    probe[:, 0] = np.nan
    imputed = probe.copy()
    imputed[:, 0] = np.nanmean(x[:, 0])
    assert np.abs(_scores(model, probe) + est.score_samples(probe)).max() <= 1e-6
    assert np.abs(_scores(model, probe) - _scores(model, imputed)).max() > 1e-3


def test_path_lengths_are_scikit_learns() -> None:
    from sklearn.ensemble._iforest import _average_path_length

    n = np.array([0, 1, 2, 3, 4, 10, 256, 65536])
    assert np.abs(average_path_length(n) - _average_path_length(n)).max() <= 1e-12
    assert average_path_length(2) == 1.0 and average_path_length(1) == 0.0


def test_chunked_fit_equals_one_fit_and_the_deadline_is_looked_at_between_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.ensemble import IsolationForest

    x = _rows(400, 0)
    kw = estimator_kwargs({"iforest_n_estimators": 60}, seed=3, n_rows=len(x))  # chunks of 25, 25, 10
    chunked = fit_iforest(x, kw)
    whole = IsolationForest(n_estimators=60, random_state=3).fit(x)
    assert len(chunked.estimators_) == 60
    assert np.abs(chunked.score_samples(x) - whole.score_samples(x)).max() == 0.0

    with pytest.raises(DeadlineReached):  # a deadline already passed: no tree is fitted
        fit_iforest(x, kw, deadline=-1.0)
    fits: list[int] = []
    real_fit = IsolationForest.fit
    monkeypatch.setattr(IsolationForest, "fit",
                        lambda self, *a, **k: (fits.append(self.n_estimators), real_fit(self, *a, **k))[1])
    ticks = iter(range(100))  # a fake clock: one second per look
    with pytest.raises(DeadlineReached):
        fit_iforest(x, {**kw, "n_estimators": 200}, deadline=1.5, clock=lambda: float(next(ticks)))
    assert fits == [25, 50]  # looked at 0 and 1 (fit a chunk each), then 2: past the deadline


def test_onnx_runtime_equals_the_module_and_best_pt_round_trips(tmp_path: Path) -> None:
    _needs_nan_support()
    from automl.artifacts import model_from_checkpoint
    from automl.runtime.export import export_onnx, max_abs_diff
    from automl.runtime.ort import make_session

    est, model = _fit(_rows(700, 0, 0.1), iforest_max_features=0.5)
    x = _rows(300, 1, missing=0.2, scale=2.0)
    path = export_onnx(model, torch.zeros(1, F), tmp_path / "iforest.onnx", {"automl.task": "anomaly"})
    sess = make_session(path, ["CPUExecutionProvider"])
    for rows in (x[:1], x[:7], x):  # the batch axis is dynamic
        got = sess.run(["logits"], {"input": rows})[0]
        assert got.shape == (len(rows),) and np.abs(got + est.score_samples(rows)).max() <= 1e-6
    assert max_abs_diff(model, path, torch.from_numpy(x)) <= 1e-6

    arch = {"family": "iforest", "num_features": F, "n_trees": model.trees,
            "n_nodes": model.left.numel() // model.trees, "depth": model.depth, "max_samples": 256}
    torch.save({"arch": arch, "state_dict": model.state_dict()}, tmp_path / "best.pt")
    loaded = model_from_checkpoint(torch.load(tmp_path / "best.pt", weights_only=True))
    assert np.array_equal(_scores(loaded, x), _scores(model, x))


def test_reference_is_sklearns_default_on_exactly_the_rows_given() -> None:
    from sklearn.ensemble import IsolationForest

    train, held = _rows(500, 0), _rows(200, 1, scale=2.0)
    ref = isolation_forest_reference(train, held, seed=5)
    assert ref.shape == (200,)
    assert np.array_equal(ref, -IsolationForest(random_state=5).fit(train).score_samples(held))
    assert not np.array_equal(ref, isolation_forest_reference(train[:400], held, seed=5))  # the rows matter
    score = fit_reference(train, seed=5)  # fitted once, scores any rows (the task's Reference callable)
    assert np.array_equal(score(held), ref) and np.array_equal(score(held[:7]), ref[:7])
    # the family's first trial (scikit-learn's defaults) on the same rows and seed is the reference itself
    bundle = SimpleNamespace(x_train=torch.from_numpy(train), meta={"preprocess": {"num_features": F}})
    model, arch = get_model("iforest").fit_direct({}, bundle, seed=5)
    assert arch["n_trees"] == 100 and arch["max_samples"] == 256
    assert np.abs(_scores(model, held) - ref).max() <= 1e-6


def test_images_are_scored_as_their_pixels(tmp_path: Path) -> None:
    """An image bundle (meta without ``num_features``): the forest sees the flattened pixels, in
    PyTorch and in the exported file."""
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session

    rng = np.random.default_rng(0)
    train, held = rng.random((300, 1, 8, 8), np.float32), rng.random((40, 1, 8, 8), np.float32)
    held[:5] *= 3.0
    bundle = SimpleNamespace(x_train=torch.from_numpy(train), meta={"input_shape": [1, 8, 8], "preprocess": {}})
    model, arch = get_model("iforest").fit_direct({"iforest_n_estimators": 20}, bundle, seed=1)
    assert arch["num_features"] == 64
    ref = -fit_iforest(train.reshape(300, 64), estimator_kwargs({"iforest_n_estimators": 20}, 1, 300)
                       ).score_samples(held.reshape(40, 64))
    assert np.abs(_scores(model, held) - ref).max() <= 1e-6
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "img.onnx", {"automl.task": "anomaly"})
    got = make_session(path, ["CPUExecutionProvider"]).run(["logits"], {"input": held})[0]
    assert got.shape == (40,) and np.abs(got - ref).max() <= 1e-6


def test_kwargs_are_sklearn_defaults_and_bad_values_are_refused() -> None:
    assert estimator_kwargs({}, seed=3, n_rows=1000) == {
        "random_state": 3, "n_estimators": 100, "max_samples": 256, "max_features": 1.0, "bootstrap": False}
    assert estimator_kwargs({}, 0, n_rows=100)["max_samples"] == 100  # "auto": min(256, rows)
    kw = estimator_kwargs({"iforest_n_estimators": 50.0, "iforest_max_samples": 10**6}, 0, n_rows=10**7)
    assert kw["n_estimators"] == 50 and isinstance(kw["n_estimators"], int)
    assert kw["max_samples"] == iforest_mod.MAX_SAMPLES
    for bad in ({"iforest_n_estimators": 0}, {"iforest_n_estimators": 10**6}, {"iforest_max_samples": "all"},
                {"iforest_max_samples": 2.5}, {"iforest_max_features": 0.0}, {"iforest_max_features": 1.5},
                {"iforest_max_features": True}, {"iforest_bootstrap": "yes"}):
        with pytest.raises(ValueError, match="iforest"):
            estimator_kwargs(bad, 0, n_rows=1000)


ARCH = {"family": "iforest", "num_features": F, "n_trees": 3, "n_nodes": 7, "depth": 2, "max_samples": 4}


@pytest.mark.parametrize("bad", [
    {"n_trees": 10**9}, {"n_nodes": 10**9}, {"n_trees": 1000, "n_nodes": 100_000}, {"depth": 10**6},
    {"num_features": 10**12}, {"n_trees": -1}, {"n_nodes": "63"}, {"max_samples": 10**9}, {"depth": 7},
])
def test_build_refuses_a_forged_or_oversized_arch_before_allocating(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="iforest arch"):
        get_model("iforest").build({**ARCH, **bad})
    with pytest.raises(ArtifactError, match="incomplete or invalid"):
        build_from_arch({**ARCH, **bad})


def test_a_forged_checkpoint_is_refused() -> None:
    from automl.artifacts import model_from_checkpoint

    _, model = _fit(_rows(300, 0), iforest_n_estimators=5)
    arch = {"family": "iforest", "num_features": F, "n_trees": 5, "n_nodes": model.left.numel() // 5,
            "depth": model.depth, "max_samples": 256}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model_from_checkpoint({"arch": arch, "state_dict": state})  # the real one loads
    for key, value in (("left", 10**9), ("feature", F), ("left", -1)):
        forged = {k: v.clone() for k, v in state.items()}
        forged[key][0] = value
        with pytest.raises(ArtifactError, match=f"iforest buffer '{key}'"):
            model_from_checkpoint({"arch": arch, "state_dict": forged})
    for huge in ({**arch, "n_trees": 10**8}, {**arch, "n_trees": 1000, "n_nodes": 100_000}):
        with pytest.raises(ArtifactError, match="iforest arch"):  # refused before anything is allocated
            model_from_checkpoint({"arch": huge, "state_dict": state})


def test_fit_direct_refuses_an_oversized_forest_before_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = SimpleNamespace(x_train=torch.zeros(70_000, F), meta={"preprocess": {"num_features": F}})
    monkeypatch.setattr(iforest_mod, "fit_iforest", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(ValueError, match="iforest with these parameters: 1000 trees of 131071 nodes"):
        get_model("iforest").fit_direct({"iforest_n_estimators": 1000, "iforest_max_samples": 65536},
                                        bundle, seed=0)


def test_the_family_joins_the_anomaly_task_and_its_space_is_bounded() -> None:
    from automl.exceptions import SearchSpaceError
    from automl.search.space import parse_space

    family = get_model("iforest")
    assert "iforest" in list_models("anomaly") and family.tasks == ("anomaly",)
    assert family.direct_fit and family.prune_unsupported and family.quantize_unsupported
    unfitted = build_from_arch(family.arch_from_params({}, {"preprocess": {"num_features": F}}))
    assert torch.equal(unfitted(torch.zeros(4, F)), torch.ones(4))  # one empty tree: every row scores 1
    trees = {"params": {"model": "iforest", "iforest_n_estimators": {"type": "int", "low": 10, "high": 10**6}}}
    with pytest.raises(SearchSpaceError, match=r"'iforest_n_estimators': range \[10, 1000000\] is outside"):
        parse_space(trees)


#: the family's block of the anomaly space (search_spaces/anomaly.yaml is the anomaly task's; this is
#: the block handed to it, in docs-inbox/iforest.md)
SPACE_BLOCK = """
params:
  model: {type: categorical, choices: [iforest]}
  # isolation forest (automl/models/iforest.py); scikit-learn's defaults: 100 trees, max_samples auto
  # (min(256, rows)), all features, no bootstrap
  iforest_n_estimators: {type: int, low: 50, high: 400, log: true, help: trees, when: {model: [iforest]}}
  iforest_max_samples: {type: categorical, choices: [auto, 64, 128, 512, 1024, 4096],
                        help: "rows a tree is fitted on (auto: min(256, rows))", when: {model: [iforest]}}
  iforest_max_features: {type: float, low: 0.3, high: 1.0, help: fraction of the columns a tree sees,
                         when: {model: [iforest]}}
  iforest_bootstrap: {type: categorical, choices: [false, true], help: rows drawn with replacement,
                      when: {model: [iforest]}}
firsts:
  - {model: iforest, iforest_n_estimators: 100, iforest_max_samples: auto, iforest_max_features: 1.0,
     iforest_bootstrap: false}
"""


def test_the_space_block_parses_and_its_first_trial_is_the_reference() -> None:
    import yaml

    from automl.exceptions import SearchSpaceError
    from automl.search.space import parse_space

    space = parse_space(yaml.safe_load(SPACE_BLOCK), source="iforest block")
    (first,) = space.family_firsts()
    assert estimator_kwargs(first, seed=0, n_rows=1000) == estimator_kwargs({}, seed=0, n_rows=1000)
    train, held = _rows(500, 0), _rows(200, 1, scale=2.0)
    bundle = SimpleNamespace(x_train=torch.from_numpy(train), meta={"preprocess": {"num_features": F}})
    model, _ = get_model("iforest").fit_direct(first, bundle, seed=7)
    assert np.abs(_scores(model, held) - isolation_forest_reference(train, held, seed=7)).max() <= 1e-6
    big = {"params": {**yaml.safe_load(SPACE_BLOCK)["params"],
                      "iforest_max_samples": {"type": "categorical", "choices": ["auto", 100_000]}}}
    with pytest.raises(SearchSpaceError, match="value 100000 is outside what model family 'iforest' can build"):
        parse_space(big)


def test_the_objective_fits_the_family_directly_and_keeps_its_weights(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """Through the search's objective with a throwaway one-class task (the anomaly task may not be on
    this branch): the trial's value is the AUROC of the kept module, which is scikit-learn's forest
    fitted with the trial's seed on the training rows."""
    import optuna
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from automl.artifacts import model_from_checkpoint
    from automl.data.bundle import DataBundle
    from automl.search.objective import Objective, trial_checkpoint_path
    from automl.search.space import parse_space
    from automl.tasks import Metric, Task, register_metric, register_task, unregister_metric, unregister_task

    def auroc(pred: np.ndarray, y: np.ndarray) -> float:  # the objective scores the all-normal training rows too
        return float(roc_auc_score(y, pred)) if 0 < y.sum() < len(y) else 0.5

    class OneClass(Task):
        metric, direction, default_model = "toy_auroc", "maximize", "iforest"

        def loss_fn(self, label_smoothing: float = 0.0) -> Any:
            return lambda scores, y: scores.float().mean()

        def metric_fn(self) -> Any:
            return lambda scores, y: auroc(scores.numpy(), y.numpy())

    monkeypatch.setattr(type(get_model("iforest")), "tasks", ("anomaly", "toy_oneclass"))
    register_metric(Metric("toy_auroc", "maximize", labels=True, score_fn=auroc))
    register_task("toy_oneclass")(OneClass)
    try:
        normal, odd = _rows(300, 0), _rows(60, 1, scale=4.0)
        x_val = np.concatenate([normal[200:250], odd[:30]])
        y_val = np.r_[np.zeros(50), np.ones(30)].astype(np.int64)
        t = torch.from_numpy
        bundle = DataBundle(t(normal[:200]), torch.zeros(200, dtype=torch.int64), t(x_val), t(y_val),
                            t(x_val), t(y_val), meta={"preprocess": {"num_features": F}, "input_shape": [F]})
        space = parse_space({"params": {"model": "iforest", "iforest_n_estimators": 30,
                                        "iforest_max_features": {"type": "float", "low": 0.5, "high": 1.0}}})
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize")
        run = SimpleNamespace(task=OneClass(), bundle=bundle, space=space, epochs=1, device=torch.device("cpu"),
                              seed=4, run_dir=tmp_path, trial_attrs={}, cv=0, latency=None, objectives=(),
                              score="none")
        study.optimize(Objective(run), n_trials=1)
        trial = study.trials[0]
        assert trial.state.name == "COMPLETE" and trial.user_attrs["fit"] == "direct"
        kept = torch.load(trial_checkpoint_path(tmp_path / "trials", 0), weights_only=True)
        assert kept["arch"]["family"] == "iforest" and kept["arch"]["n_trees"] == 30
        with torch.no_grad():
            scores = model_from_checkpoint(kept)(t(x_val)).numpy()
        assert auroc(scores, y_val) == pytest.approx(trial.value, abs=1e-12) and trial.value > 0.9
        est = IsolationForest(n_estimators=30, max_features=trial.params["iforest_max_features"],
                              random_state=4 + trial.number).fit(normal[:200])  # the trial's seed
        assert np.abs(scores + est.score_samples(x_val)).max() <= 1e-6
    finally:
        unregister_task("toy_oneclass")
        unregister_metric("toy_auroc")
