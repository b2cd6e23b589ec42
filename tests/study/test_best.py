"""best.pt survives what a search's end used to lose: the best trial's kept weights unreadable
(issue 11 item 8), and the search killed with SIGKILL before its end (item 9)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.study._spaces import tiny_space

REPO = Path(__file__).resolve().parents[2]
TINY_SPACE = tiny_space()


def _search_args(tmp_path: Path, *extra: str) -> list[str]:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    return [sys.executable, "-m", "cli", "search", "--data", "digits", "--space", str(space), "--pruner", "none",
            "--out", str(tmp_path / "runs"), "--study", "s", "--device", "cpu", "--json", *extra]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _study(tmp_path: Path) -> Any:
    import optuna

    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")


def _check_best_pt(tmp_path: Path) -> dict[str, Any]:
    """best.pt loads safely, is the study's best trial, and its weights score that trial's value."""
    import automl
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate

    best_pt = tmp_path / "runs" / "s" / "best.pt"
    ckpt = torch.load(best_pt, map_location="cpu", weights_only=True)
    study = _study(tmp_path)
    assert ckpt["trial"] == study.best_trial.number
    task = get_task("image")
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    _, val = evaluate(automl.load_model(best_pt), bundle.x_val, bundle.y_val, task.loss_fn(0.0), task.metric_fn())
    assert val == pytest.approx(study.best_value, abs=1e-6)
    return ckpt


def _invoke(args: list[str]) -> Any:
    """The search of ``args`` (as _search_args builds them) run in-process: no second interpreter to
    import torch into; returns click's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    import cli

    assert args[:3] == [sys.executable, "-m", "cli"]
    return CliRunner().invoke(cli.app, args[3:])


def test_unreadable_trial_checkpoint_is_retrained(tmp_path: Path) -> None:
    first = _invoke(_search_args(tmp_path, "--trials", "2", "--epochs", "4"))
    assert first.exit_code == 0, first.stderr[-2000:]
    best = json.loads(first.stdout)["best_trial"]
    run_dir = tmp_path / "runs" / "s"
    (run_dir / "best.pt").unlink()
    (run_dir / "best.json").unlink()
    # A checkpoint holding a pickled object: PyTorch refuses it with advice to load it unsafely.
    torch.save({"arch": {}, "when": datetime.datetime.now()}, run_dir / "trials" / f"trial-{best}.pt")

    second = _invoke(_search_args(tmp_path, "--trials", "1", "--epochs", "1"))  # one epoch: a worse trial
    assert second.exit_code == 0, second.stderr[-2000:]
    assert "weights_only" not in second.stderr and "weights_only" not in second.stdout
    out = json.loads(second.stdout)  # --json still prints its one object
    assert out["best_trial"] == best and out["n_trials"] == 3
    assert any(f"best trial {best}" in n and "retrained it from its parameters" in n for n in out["notes"])
    ckpt = _check_best_pt(tmp_path)
    assert ckpt["trial"] == best


def test_best_pt_is_kept_current_so_a_killed_search_leaves_one(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_search_args(tmp_path, "--trials", "20", "--epochs", "3"), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    db = tmp_path / "runs" / "automl.db"

    def completed() -> int:
        if not db.exists():
            return 0
        try:
            return sum(t.state.name == "COMPLETE" for t in _study(tmp_path).get_trials())
        except Exception:  # the study is not created yet
            return 0

    while completed() < 2:
        assert proc.poll() is None, proc.stderr.read()[-1500:]
        assert time.monotonic() < deadline, "no two trials completed in time"
        time.sleep(0.2)
    time.sleep(0.5)  # into the next trial
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert (tmp_path / "runs" / "s" / "best.pt").is_file()
    _check_best_pt(tmp_path)
    stored = json.loads((tmp_path / "runs" / "s" / "best.json").read_text())
    assert stored["trial"] == _study(tmp_path).best_trial.number
