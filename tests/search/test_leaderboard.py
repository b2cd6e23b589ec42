"""The leaderboard: each family's best trial against a classic reference fitted on the same split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from automl.search.leaderboard import compare_note, leaderboard, reference_scores
from automl.tasks import DataBundle, get_task
from tests.study.test_trials import invoke


def _bundle(n: int = 300, seed: int = 0) -> DataBundle:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0.5)).astype(np.int64)  # a rule trees find and a line does not
    spec = {"num_dense": 4, "num_features": 4, "columns": []}
    tr, va, te = np.arange(0, 200), np.arange(200, 250), np.arange(250, n)
    return DataBundle.from_indices(lambda i: torch.from_numpy(x[i]), y, (tr, va, te),
                                   {"preprocess": spec, "num_classes": 2, "classes": ["0", "1"]})


def test_tabular_reference_is_default_gradient_boosting_on_the_same_split() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    bundle = _bundle()
    task = get_task("tabular")
    ref = reference_scores(task, bundle)
    assert ref is not None and "HistGradientBoosting" in ref["name"] and ref["metric"] == "accuracy"
    direct = HistGradientBoostingClassifier(random_state=0).fit(bundle.x_train.numpy(), bundle.y_train.numpy())
    assert ref["val"] == pytest.approx(float((direct.predict(bundle.x_val.numpy()) == bundle.y_val.numpy()).mean()))
    assert ref["test"] == pytest.approx(float((direct.predict(bundle.x_test.numpy()) == bundle.y_test.numpy()).mean()))
    assert ref["test"] > 0.8  # the XOR-like rule is easy for trees


def test_text_reference_learns_words_from_token_ids() -> None:
    rng = np.random.default_rng(0)
    n, length = 400, 12
    x = rng.integers(3, 50, size=(n, length))
    y = rng.integers(0, 2, size=n)
    x[y == 1, 0] = 2  # token 2 marks class 1
    x[:, -3:] = 0  # padding
    tr, va, te = np.arange(0, 300), np.arange(300, 350), np.arange(350, n)
    bundle = DataBundle.from_indices(lambda i: torch.from_numpy(x[i]), y.astype(np.int64), (tr, va, te),
                                     {"preprocess": {}, "num_classes": 2, "classes": ["a", "b"]})
    ref = reference_scores(get_task("text"), bundle)
    assert ref is not None and "logistic regression" in ref["name"]
    assert ref["test"] >= 0.9 and ref["val"] >= 0.9


def test_image_has_no_reference() -> None:
    assert reference_scores(get_task("image"), _bundle()) is None


def _study_with(values: list[tuple[str, float | None]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for fam, value in values:
        dist = {"model": optuna.distributions.CategoricalDistribution(["mlp", "resmlp"])}
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(params={"model": fam}, distributions=dist, value=value, state=state))
    return study


def test_leaderboard_keeps_each_familys_best_and_sorts_the_reference_in() -> None:
    study = _study_with([("mlp", 0.70), ("resmlp", 0.80), ("mlp", 0.75), ("resmlp", None)])
    study.set_user_attr("reference", {"name": "HGB", "metric": "accuracy", "val": 0.78, "test": 0.77, "seconds": 1})
    board = leaderboard(study, "tabular", "mlp", "accuracy", "maximize", {"trial": 1, "value": 0.79})
    names = [(r["name"], r["val"]) for r in board["rows"]]
    assert names == [("resmlp", 0.80), ("reference", 0.78), ("mlp", 0.75)]
    resmlp, _, mlp = board["rows"]
    assert (resmlp["trials"], resmlp["complete"], resmlp["best_trial"], resmlp["test"]) == (2, 1, 1, 0.79)
    assert (mlp["trials"], mlp["complete"], mlp["best_trial"], mlp["test"]) == (2, 2, 2, None)
    note = compare_note(board)
    assert note is not None and "2.0 points above" in note and "not caught up" not in note
    # other families' best trials get their test score when their weights were kept
    board = leaderboard(study, "tabular", "mlp", "accuracy", "maximize", {"trial": 1, "value": 0.79}, {2: 0.74})
    assert [r["test"] for r in board["rows"]] == [0.79, 0.77, 0.74]


def test_the_ensemble_row_sits_beside_the_families() -> None:
    """The study attribute ``ensemble`` (automl.study._ensemble) gives a row of its own, sorted by its
    validation score; the note compares it with the reference when best.pt is the ensemble."""
    study = _study_with([("mlp", 0.70), ("resmlp", 0.80), ("mlp", 0.75)])
    study.set_user_attr("reference", {"name": "HGB", "metric": "accuracy", "val": 0.78, "test": 0.77, "seconds": 1})
    study.set_user_attr("ensemble", {"trials": [1, 2], "val": 0.83, "test": 0.81, "used": True})
    board = leaderboard(study, "tabular", "mlp", "accuracy", "maximize", {"trial": 1, "value": 0.79})
    assert [(r["name"], r["val"], r["test"]) for r in board["rows"]] == [
        ("ensemble", 0.83, 0.81), ("resmlp", 0.80, 0.79), ("reference", 0.78, 0.77), ("mlp", 0.75, None)]
    assert board["rows"][0]["members"] == [1, 2] and board["rows"][0]["complete"] == 2
    note = compare_note(board)
    assert note is not None and note.startswith("leaderboard: the best model (ensemble of trials [1, 2])")
    assert "4.0 points above" in note
    # an ensemble that did not win has no test score: the note speaks of the best family
    study.set_user_attr("ensemble", {"trials": [1, 2], "val": 0.80, "test": None, "used": False})
    board = leaderboard(study, "tabular", "mlp", "accuracy", "maximize", {"trial": 1, "value": 0.79})
    assert "(resmlp, trial 1)" in (compare_note(board) or "")


def test_compare_note_for_rmse_says_how_much_worse() -> None:
    board = {"metric": "rmse", "direction": "minimize", "rows": [
        {"name": "reference", "kind": "reference", "model": "HGB", "val": 1.0, "test": 100.0, "best_trial": None},
        {"name": "mlp", "kind": "family", "val": 1.1, "test": 110.0, "best_trial": 3}]}
    note = compare_note(board)
    assert note is not None and "10.0% above" in note and "not caught up" in note
    board["rows"][1]["test"] = 100.0000001  # the same score in float32 and float64
    note = compare_note(board)
    assert note is not None and "level with the reference" in note and "not caught up" not in note


def test_search_json_and_report_carry_the_leaderboard(tmp_path: Path) -> None:
    r = invoke("search", "--task", "tabular", "--data", "wine", "--trials", "2", "--epochs", "2",
               "--out-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    rows = result["leaderboard"]["rows"]
    ref = next(x for x in rows if x["kind"] == "reference")
    assert 0.8 <= ref["test"] <= 1.0 and "HistGradientBoosting" in ref["model"]
    fams = {x["name"]: x for x in rows if x["kind"] == "family"}
    assert set(fams) == {"hgb", "catboost"}  # the space's first two trials: the two default boosted trees
    assert all(f["trials"] == 1 and f["test"] is not None for f in fams.values())
    best = fams[result["params"]["model"]]
    assert best["test"] == result["test_accuracy"] and best["best_trial"] == result["best_trial"]
    assert any(n.startswith(f"leaderboard: the best model ({best['name']}") for n in result["notes"])
    rep = invoke("report", "--study", result["study"], "--out-dir", str(tmp_path), "--json")
    assert rep.exit_code == 0, rep.stderr
    page = Path(json.loads(rep.stdout)["report"]).read_text()
    assert '<h2 id="leaderboard">' in page and "reference: HistGradientBoostingClassifier" in page
