"""`automl trials` at 80 columns: every line fits and nothing is cut; --json keeps everything (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna

from tests.study.test_trials import make_study

AUTOML = [sys.executable, "-c", "import cli; cli.main()"]
LONG_REASON = ("out of memory on cuda (batch_size=512, width=256, depth=4): tried to allocate 2.00 GiB; "
               "the trial was marked failed and the study went on")


def test_trials_readable_at_80_columns(tmp_path: Path) -> None:
    make_study(tmp_path)
    study = optuna.load_study(study_name="synth", storage=f"sqlite:///{tmp_path / 'automl.db'}")
    trial = study.ask()
    trial.set_user_attr("fail_reason", LONG_REASON)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([*AUTOML, "trials", "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    flat = " ".join(proc.stdout.split())
    assert LONG_REASON in flat, proc.stdout  # wrapped, never cut to a few characters
    assert "trial pruner stopped it after epoch 2" in flat
    assert "lr=" in flat and "optimizer=" in flat
    as_json = subprocess.run([*AUTOML, "trials", "--out-dir", str(tmp_path), "--json"], capture_output=True,
                             text=True, env=env, timeout=120)
    reasons = [t["reason"] for t in json.loads(as_json.stdout)["trials"]]
    assert LONG_REASON in reasons
    wide = subprocess.run([*AUTOML, "trials", "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160"}, timeout=120)
    assert max(len(line) for line in wide.stdout.splitlines()) <= 160 and "┃" in wide.stdout  # the table
