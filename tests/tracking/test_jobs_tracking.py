"""``automl search --jobs 2 --mlflow file:DIR --tensorboard DIR``: each worker process logs its own trials
with its own client, under the one study run the parent created (a new interpreter per child: slow)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import cli
from automl.study import open_storage
from tests.study._spaces import tiny_space

pytest.importorskip("mlflow")


@pytest.mark.slow
def test_each_job_logs_its_own_trials(tmp_path: Path) -> None:
    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text(tiny_space())
    uri = f"file:{tmp_path / 'mlruns'}"
    proc = CliRunner().invoke(cli.app, [
        "search", "--task", "image", "--space", str(space), "--trials", "4", "--epochs", "1", "--pruner", "none",
        "--device", "cpu", "--jobs", "2", "--out-dir", str(tmp_path / "runs"), "--json", "--mlflow", uri,
        "--tensorboard", str(tmp_path / "tb")])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    study = optuna.load_study(study_name=result["study"], storage=open_storage(result["storage"]))  # a journal file
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[result["study"]])
    parents = runs[runs["tags.automl.role"] == "study"]
    trials = runs[runs["tags.automl.role"] == "trial"]
    assert len(parents) == 1  # the parent created it before the children started; they found it
    assert sorted(trials["tags.mlflow.runName"]) == sorted(str(t.number) for t in study.trials)
    assert set(trials["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    # logged by the process that ran the trial: the worker tag is that trial's worker, two of them
    by_number = {t.number: t.user_attrs["worker"] for t in study.trials}
    for _, row in trials.iterrows():
        assert row["tags.worker"] == by_number[int(row["tags.mlflow.runName"])]
    assert len(set(by_number.values())) == 2
    assert sorted(p.name for p in (tmp_path / "tb" / result["study"]).iterdir()) == sorted(
        f"trial-{t.number}" for t in study.trials)
