"""Scale-out end to end with real processes: several `automl worker` processes on one PostgreSQL
study, a worker killed with SIGKILL mid-trial, and `automl search` interrupted with SIGINT and resumed.

The PostgreSQL tests need a server: `source .ci/postgres.sh` starts one and exports
AUTOML_TEST_PG_URL; without it they are skipped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.study._spaces import tiny_space

PG_URL = os.environ.get("AUTOML_TEST_PG_URL")
needs_pg = pytest.mark.skipif(
    not PG_URL, reason="AUTOML_TEST_PG_URL is not set (run `source .ci/postgres.sh` to start a PostgreSQL server)"
)
REPO = Path(__file__).resolve().parents[2]
TINY_SPACE = tiny_space(batch_size=64)


def space_file(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return str(path)


def spawn(args: list[str]) -> subprocess.Popen:
    """`automl ARGS…` in a new process (one torch thread: the machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=timeout)
    data = json.loads(out) if out.strip() else {}
    return proc.returncode, data, err[-2000:]


def load(url: str, name: str) -> Any:
    import optuna

    from automl.study import open_storage, silence_optuna

    silence_optuna()
    return optuna.load_study(study_name=name, storage=open_storage(url))


def wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended (code {proc.returncode}) before {what}: {proc.stderr.read()[-1500:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def prepare(tmp_path: Path, url: str, **kw: Any) -> str:
    """Create an automl study (configuration stored, no trials) in ``url``; returns its name."""
    from automl.study import SearchSettings, prepare_search

    name = f"scaleout-{uuid.uuid4().hex[:8]}"
    settings = SearchSettings(task="image", data="digits", space=space_file(tmp_path), pruner="none", storage=url,
                              study=name, out=str(tmp_path / "runs"), device="cpu", **kw)
    prepare_search(settings)
    return name


def states(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


@needs_pg
def test_three_workers_on_one_postgresql_study(tmp_path):
    name = prepare(tmp_path, PG_URL, epochs=2)
    requested = [2, 1, 1]
    procs = [spawn(["worker", "--storage", PG_URL, "--study", name, "--trials", str(n),
                    "--out", str(tmp_path / "runs"), "--device", "cpu", "--json"]) for n in requested]
    results = [finish(p) for p in procs]
    for (code, data, err), n in zip(results, requested, strict=True):
        assert code == 0, err
        assert data["trials_run"] == n and data["retries_run"] == 0
    trials = load(PG_URL, name).get_trials()
    assert len(trials) == sum(requested)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(sum(requested)))  # no trial number repeats
    assert states(trials) == {"COMPLETE": sum(requested)}  # none left RUNNING (or WAITING)
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.user_attrs["worker"]] = by_worker.get(t.user_attrs["worker"], 0) + 1
    assert sorted(by_worker.values()) == sorted(requested)  # each process ran its own share
    assert {d["worker"] for _, d, _ in results} == set(by_worker)


@needs_pg
def test_killed_worker_trial_is_failed_after_grace_and_retried(tmp_path):
    from automl.study.trials import trial_row

    grace = 3
    # 100 epochs: a tiny trial of 4 epochs now ends within a poll or two (no dynamo import in its
    # first epoch), before the victim can be caught mid-trial
    name = prepare(tmp_path, PG_URL, epochs=100, heartbeat=1, grace=grace)
    out = str(tmp_path / "runs")
    victim = spawn(["worker", "--storage", PG_URL, "--study", name, "--trials", "1", "--out", out, "--device", "cpu"])
    wid = f"{socket.gethostname()}:{victim.pid}"
    study = load(PG_URL, name)
    import sqlalchemy

    from automl.study.storage import with_driver

    engine = sqlalchemy.create_engine(with_driver(PG_URL))

    def victim_mid_trial() -> Any:  # past an epoch, with a heartbeat written (a trial without one is reaped
        # as a dead local pid, not as stale)
        running = [t for t in study.get_trials() if t.user_attrs.get("worker") == wid and t.intermediate_values]
        if not running or running[0].state.name != "RUNNING":
            return None
        with engine.connect() as db:
            beats = db.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats WHERE trial_id = :t"),
                               {"t": running[0]._trial_id}).scalar()
        return running[0] if beats else None

    killed = wait_for(victim_mid_trial, 180, "the victim's first epoch", victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    time.sleep(grace + 1)  # past the grace period: the victim's heartbeat is stale
    requested = [1, 1]
    survivors = [spawn(["worker", "--storage", PG_URL, "--study", name, "--trials", str(n), "--out", out,
                        "--device", "cpu", "--json"]) for n in requested]
    results = [finish(p) for p in survivors]
    for code, _, err in results:
        assert code == 0, err
    assert sum(d["retries_run"] for _, d, _ in results) == 1
    assert [killed.number] in [d["reaped"] for _, d, _ in results]  # one survivor marked it failed

    trials = load(PG_URL, name).get_trials()
    dead = trials[killed.number]
    assert dead.state.name == "FAIL"
    reason = trial_row(dead).reason  # what `automl trials` shows
    assert f"worker {wid} stopped sending heartbeats for more than {grace} s" in reason
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == dead.params  # the same trial, run again
    # Every requested trial is accounted for: 1 (victim) + 1 + 1 fresh trials, plus the one retry.
    fresh = [t for t in trials if "retry_of" not in t.user_attrs]
    assert len(fresh) == 1 + sum(requested)
    assert len(trials) == len(fresh) + 1
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert states(trials) == {"COMPLETE": len(trials) - 1, "FAIL": 1}


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_sigint_then_resume_keeps_trials_and_best_pt(tmp_path, jobs):
    import torch

    from automl import load_model
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate

    out = tmp_path / "runs"
    # --jobs 2 on the default storage uses the journal file (and the parent forwards Ctrl-C to its workers).
    db = out / ("automl.db" if jobs == 1 else "journal.log")
    url = f"sqlite:///{db.resolve()}" if jobs == 1 else str(db.resolve())
    name = "interrupt"
    args = ["search", "--data", "digits", "--space", space_file(tmp_path), "--epochs", "3", "--pruner", "none",
            "--out", str(out), "--study", name, "--device", "cpu", "--jobs", str(jobs), "--json"]
    first = spawn([*args, "--trials", "30"])

    def two_complete_and_one_training() -> bool:
        if not db.exists():
            return False
        try:
            trials = load(url, name).get_trials()
        except Exception:  # the study is not created yet
            return False
        done = sum(t.state.name == "COMPLETE" for t in trials)
        return done >= 2 and any(t.state.name == "RUNNING" and t.intermediate_values for t in trials)

    wait_for(two_complete_and_one_training, 180, "two completed trials", first)
    first.send_signal(signal.SIGINT)
    code, data, err = finish(first, 120)
    assert code == 130, err
    assert data["interrupted"] is True
    assert "interrupted" in err
    study = load(url, name)
    before = {t.number: t.value for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert len(before) >= 2
    assert states(study.get_trials()).get("RUNNING", 0) == 0
    for t in study.get_trials():
        if t.state.name == "FAIL":
            assert "interrupted" in t.user_attrs["fail_reason"]

    def check_best_pt() -> None:
        study = load(url, name)
        ckpt = torch.load(out / name / "best.pt", map_location="cpu", weights_only=True)
        best_json = json.loads((out / name / "best.json").read_text())
        assert ckpt["trial"] == study.best_trial.number == best_json["trial"]
        # an ensemble of the trials is best.pt only when it beats the best trial on validation (its value
        # is its own; its trial, the best member); else the weights are the best trial's
        want = best_json["value"] if best_json.get("ensemble") else study.best_value
        assert best_json["value"] == pytest.approx(want, abs=1e-9) and want >= study.best_value - 1e-9
        # The weights are what best.json says: they reproduce its validation accuracy.
        task = get_task("image")
        bundle = task.load_data(DataConfig(**ckpt["data"]))
        _, val_acc = evaluate(load_model(out / name / "best.pt"), bundle.x_val, bundle.y_val, task.loss_fn(0.0),
                              task.metric_fn())
        assert val_acc == pytest.approx(want, abs=1e-6)

    check_best_pt()
    if jobs == 1:  # the resume runs in-process: no second interpreter to import torch into
        from typer.testing import CliRunner

        import cli

        res = CliRunner().invoke(cli.app, [*args, "--trials", "1"])
        code, data, err = res.exit_code, json.loads(res.stdout), res.stderr[-2000:]
    else:
        code, data, err = finish(spawn([*args, "--trials", "1"]), 180)
    assert code == 0, err
    assert data["interrupted"] is False
    notes = [n for n in data["notes"] if not n.startswith("best.pt: ensemble")]  # (when one won)
    assert data["jobs"] == jobs and bool(notes) == (jobs > 1)
    after = {t.number: t.value for t in load(url, name).get_trials() if t.state.name == "COMPLETE"}
    assert {n: after.get(n) for n in before} == before  # every completed trial is still there, unchanged
    assert len(after) == len(before) + 1
    check_best_pt()
