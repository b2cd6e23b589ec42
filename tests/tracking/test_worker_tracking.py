"""``automl worker --mlflow URI --tensorboard DIR`` joins a study that a search created without them and
logs the trials it runs, in the study's experiment (the worker creates the study run)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import cli
from tests.study._spaces import tiny_space

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


def test_worker_logs_the_trials_it_runs(tmp_path: Path) -> None:
    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text(tiny_space())
    out = tmp_path / "runs"
    proc = CliRunner().invoke(cli.app, ["search", "--task", "image", "--space", str(space), "--trials", "1",
                                        "--epochs", "1", "--device", "cpu", "--out-dir", str(out), "--json"])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    uri = f"file:{tmp_path / 'mlruns'}"
    proc = CliRunner().invoke(cli.app, ["worker", "--storage", result["storage"], "--study", result["study"],
                                        "--trials", "1", "--device", "cpu", "--out-dir", str(out), "--json",
                                        "--mlflow", uri, "--tensorboard", str(tmp_path / "tb")])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["trials_run"] == 1
    study = optuna.load_study(study_name=result["study"], storage=result["storage"])
    mine = [t for t in study.trials if t.number != 0]
    assert len(mine) == 1
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[result["study"]])
    trials = runs[runs["tags.automl.role"] == "trial"]
    assert list(trials["tags.mlflow.runName"]) == [str(mine[0].number)]  # only what this worker ran
    assert trials.iloc[0]["metrics.accuracy"] == pytest.approx(mine[0].value)
    study_run = runs[runs["tags.automl.role"] == "study"].iloc[0]
    assert trials.iloc[0]["tags.mlflow.parentRunId"] == study_run["run_id"]
    assert study_run["status"] == "RUNNING"  # the study run is the search's to end, not a worker's
    assert [p.name for p in (tmp_path / "tb" / result["study"]).iterdir()] == [f"trial-{mine[0].number}"]
