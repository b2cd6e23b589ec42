"""--cv K: each trial is scored as the mean over K held-out folds of the training + validation rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automl.exceptions import ConfigError
from automl.search.cv import CV_AUTO_FOLDS, CV_AUTO_ROWS, check_cv, fold_indices, resolve_folds


def test_folds_partition_the_rows_and_keep_class_shares() -> None:
    y = np.array([0] * 60 + [1] * 30)
    folds = fold_indices(y, 3, seed=0, stratify=True)
    held = np.concatenate([b for _, b in folds])
    assert sorted(held.tolist()) == list(range(90))  # every row held out exactly once
    for tr, va in folds:
        assert not set(tr.tolist()) & set(va.tolist()) and len(tr) + len(va) == 90
        assert (y[va] == 1).sum() == 10  # a third of each class in each fold
    assert [b.tolist() for _, b in fold_indices(y, 3, 0, True)] == [b.tolist() for _, b in folds]  # seeded
    # a class rarer than K: plain folds, still a partition
    rare = np.array([0] * 20 + [1])
    assert sorted(np.concatenate([b for _, b in fold_indices(rare, 5, 0, True)]).tolist()) == list(range(21))


def test_auto_rule_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOML_CV")
    assert resolve_folds(None, "tabular", CV_AUTO_ROWS - 1) == CV_AUTO_FOLDS
    assert resolve_folds(None, "text", CV_AUTO_ROWS) == 0
    assert resolve_folds(None, "image", 10) == 0
    assert resolve_folds(0, "tabular", 10) == 0 and resolve_folds(3, "tabular", 10**6) == 3
    for bad in (1, -2, 21):
        with pytest.raises(ConfigError, match="--cv must be 0"):
            check_cv(bad, "tabular")
    with pytest.raises(ConfigError, match="--cv is for the tabular and text tasks"):
        check_cv(5, "image")
    monkeypatch.setenv("AUTOML_CV", "3")  # the environment sets the default, not an explicit --cv
    assert resolve_folds(None, "tabular", 10**6) == 3 and resolve_folds(None, "image", 10) == 0
    assert resolve_folds(0, "tabular", 10) == 0
    monkeypatch.setenv("AUTOML_CV", "lots")
    with pytest.raises(ConfigError, match="AUTOML_CV must be"):
        resolve_folds(None, "tabular", 10)


def test_cross_validated_search_scores_the_fold_mean_and_keeps_a_refit(tmp_path: Path) -> None:
    import optuna

    from automl.study import SearchSettings, run_search

    result = run_search(SearchSettings(task="tabular", data="wine", trials=4, epochs=2, cv=3, out=str(tmp_path),
                                       device="cpu", pruner="none"))
    assert any(n.startswith("3-fold cross-validation per trial (--cv)") for n in result.notes)
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.user_attrs["automl"]["cv"] == 3
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):  # the other firsts stay queued
        scores = t.user_attrs["cv_scores"]
        assert len(scores) == 3 and t.value == pytest.approx(sum(scores) / 3, abs=1e-5)
        assert sorted(t.intermediate_values) == [1, 2, 3]  # the pruner's steps are folds
        assert t.intermediate_values[3] == pytest.approx(t.value, abs=1e-6)
        folds = [r["fold"] for r in t.user_attrs["history"]]
        if t.params["model"] in ("hgb", "catboost", "extratrees", "rf"):  # the first four: trees, one fit a fold
            assert folds == [1, 2, 3] and t.user_attrs["fit"] == "direct"
        else:
            assert folds[:4] == [1, 1, 2, 2]  # 2 epochs a fold
    assert {t.params["model"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))} == {
        "hgb", "catboost", "extratrees", "rf"}
    best = study.best_trial
    assert best.user_attrs["refit"] is True
    assert result.best_value == pytest.approx(best.value)
    # the test split is the plain split's (27 of wine's 178 rows); best.json's val figure is the CV mean
    import json

    metrics = json.loads(Path(result.best_json).read_text())["metrics"]
    assert metrics["sizes"]["test"] == 27 and metrics["cv_folds"] == 3
    assert metrics["val_accuracy"] == pytest.approx(best.value)


def test_each_familys_best_keeps_its_weights_and_gets_a_test_score(tmp_path: Path) -> None:
    from automl.study import SearchSettings, run_search

    space = tmp_path / "two.yaml"
    space.write_text("params:\n  model: {type: categorical, choices: [cnn, resnet]}\n"
                     "  width: {type: categorical, choices: [8]}\n  depth: {type: fixed, value: 1}\n"
                     "  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    result = run_search(SearchSettings(task="image", data="digits", trials=3, epochs=1, out=str(tmp_path),
                                       device="cpu", pruner="none", space=str(space)))
    rows = {r["name"]: r for r in result.leaderboard["rows"] if r["kind"] == "family"}
    assert set(rows) == {"cnn", "resnet"}
    for r in rows.values():
        assert r["complete"] >= 1 and r["test"] is not None and 0.0 <= r["test"] <= 1.0
    kept = {p.name for p in (Path(result.best_pt).parent / "trials").glob("trial-*.pt")}
    # the family bests, and the ensemble candidates (automl.search.ensemble: all 3 trials of so short a search)
    assert kept >= {f"trial-{r['best_trial']}.pt" for r in rows.values()} and len(kept) <= 3
