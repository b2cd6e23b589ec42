"""``automl search --metric``: every registered metric drives a tiny search that records it in
best.json, the leaderboard, ``trials --json`` and the report; an unknown or unfitting metric is one
line and exit 1, before any data is read where the data is not needed to know."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from automl.tasks import get_metric, list_metrics

#: a tiny network space: one hidden layer, a fixed learning rate (a trial takes about a second)
SPACE = "params:\n  model: mlp\n  depth: 1\n  width: 16\n  lr: 0.01\n  batch_size: 64\n  optimizer: adamw\n"
#: the metrics that run their search in the fast suite (one per kind: scores, threshold, multiclass
#: probabilities, regression); the others run theirs with ``-m slow``
FAST = {"roc_auc", "f1", "log_loss", "mae"}


def _data_for(name: str) -> str:
    fits = get_metric(name).fits
    if "regression" in fits:
        return "diabetes"
    return "breast-cancer" if "multiclass" not in fits or name in ("roc_auc", "balanced_accuracy") else "wine"


def _search(tmp_path: Path, *args: str) -> object:
    from cli import app

    return CliRunner().invoke(app, ["search", "--task", "tabular", "--trials", "1", "--epochs", "2", "--cv", "0",
                                    "--pruner", "none", "--out-dir", str(tmp_path / "runs"), "--device", "cpu",
                                    *args])


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in list_metrics() if get_metric(n).fits - {"unlabelled"}])
def test_a_search_records_its_metric_everywhere(tmp_path: Path, name: str) -> None:
    from cli import app

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    result = _search(tmp_path, "--data", _data_for(name), "--metric", name, "--space", str(space),
                     "--study", "m", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["metric"] == name and out["direction"] == get_metric(name).direction
    best = json.loads((tmp_path / "runs" / "m" / "best.json").read_text())
    assert best["metrics"]["metric"] == name and np.isfinite(best["metrics"][f"test_{name}"])
    assert best["metrics"][f"test_{name}"] == pytest.approx(out[f"test_{name}"])
    assert out["leaderboard"]["metric"] == name
    listed = CliRunner().invoke(app, ["trials", "--study", "m", "--out-dir", str(tmp_path / "runs"), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["metric"] == name, listed.output
    report = CliRunner().invoke(app, ["report", "--study", "m", "--out-dir", str(tmp_path / "runs"),
                                      "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "r.html").read_text()
    assert f"val {name}" in html and f"test {name}" in html


def _one_line(result: object, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and len(err.splitlines()) == 1, err
    assert all(f in err for f in fragments), err
    return err


def test_an_unknown_metric_fails_before_the_data_is_read(tmp_path: Path) -> None:
    err = _one_line(_search(tmp_path, "--data", str(tmp_path / "missing.csv"), "--metric", "f2"),
                    "unknown metric 'f2'", "choose from: accuracy, balanced_accuracy")
    assert "missing.csv" not in err  # the metric is checked before the data path


def test_a_classification_metric_on_a_declared_regression_fails_before_the_data_is_read(tmp_path: Path) -> None:
    _one_line(_search(tmp_path, "--data", str(tmp_path / "missing.csv"), "--target", "y", "--problem", "regression",
                      "--metric", "roc_auc"), "roc_auc", "regression", "choose from: rmse, mae, r2, mape")


def test_roc_auc_on_a_regression_target_fails_once_the_target_is_read(tmp_path: Path) -> None:
    _one_line(_search(tmp_path, "--data", "diabetes", "--metric", "roc_auc"),
              "--metric roc_auc is for binary or multiclass problems, not a regression target", "rmse, mae, r2, mape")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("best.pt"))


def test_f1_on_five_classes_fails_before_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    csv = tmp_path / "five.csv"
    rows = ["a,b,y"] + [f"{rng.normal():.3f},{rng.normal():.3f},c{i % 5}" for i in range(100)]
    csv.write_text("\n".join(rows) + "\n")
    _one_line(_search(tmp_path, "--data", str(csv), "--target", "y", "--metric", "f1"),
              "--metric f1 is for binary problems, not a multiclass classification (5 classes)",
              "choose from: accuracy, balanced_accuracy, f1_macro, roc_auc, log_loss")
    assert not any((tmp_path / "runs").rglob("best.pt")) if (tmp_path / "runs").exists() else True


def test_f1_on_ten_image_classes_fails_before_training(tmp_path: Path) -> None:
    from cli import app

    result = CliRunner().invoke(app, ["search", "--task", "image", "--data", "digits", "--metric", "f1", "--trials",
                                      "1", "--epochs", "1", "--out-dir", str(tmp_path / "runs"), "--device", "cpu"])
    _one_line(result, "--metric f1 is for binary problems, not a multiclass classification (10 classes)")


def test_a_bad_class_weight_is_one_line(tmp_path: Path) -> None:
    _one_line(_search(tmp_path, "--class-weight", "heavy"), "--class-weight must be one of: none, balanced")


def test_a_resumed_study_keeps_its_metric(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    first = _search(tmp_path, "--data", "breast-cancer", "--metric", "roc_auc", "--space", str(space),
                    "--study", "r", "--json")
    assert first.exit_code == 0, first.output
    again = _search(tmp_path, "--data", "breast-cancer", "--space", str(space), "--study", "r", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["metric"] == "roc_auc", again.output
    _one_line(_search(tmp_path, "--data", "breast-cancer", "--metric", "f1", "--space", str(space), "--study", "r"),
              "was created with --metric roc_auc, not --metric f1")


def test_a_worker_judges_its_trials_by_the_studys_metric(tmp_path: Path) -> None:
    import optuna

    from automl.study import SearchSettings, WorkerSettings, run_search, run_worker

    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("lr: 0.01", "lr: {type: float, low: 0.001, high: 0.1, log: true}"))
    run_search(SearchSettings(task="tabular", data="wine", metric="log_loss", space=str(space), trials=1, epochs=2,
                              cv=0, pruner="none", out=str(tmp_path / "runs"), device="cpu", study="w"))
    url = f"sqlite:///{tmp_path / 'runs' / 'automl.db'}"
    result = run_worker(WorkerSettings(storage=url, study="w", trials=1, out=str(tmp_path / "runs"), device="cpu"))
    assert result.metric == "log_loss"
    study = optuna.load_study(study_name="w", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    last = study.trials[-1]
    assert last.value == pytest.approx(last.user_attrs["history"][-1]["val_metric"]) and last.value > 0


def test_only_an_explicit_metric_gets_a_decision_threshold(tmp_path: Path) -> None:
    """The default (accuracy) search keeps the argmax it always had; ``--metric accuracy`` on binary
    data chooses a threshold on validation, as f1 and balanced_accuracy do."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    for study, extra in (("default", []), ("explicit", ["--metric", "accuracy"])):
        result = _search(tmp_path, "--data", "breast-cancer", "--space", str(space), "--study", study, *extra)
        assert result.exit_code == 0, result.output
    default = json.loads((tmp_path / "runs" / "default" / "best.json").read_text())["metrics"]
    explicit = json.loads((tmp_path / "runs" / "explicit" / "best.json").read_text())["metrics"]
    assert "threshold" not in default and 0.0 < explicit["threshold"] < 1.0
