"""Issue 29, done-when 6 and the failure rules: without the optional extra, ``--mlflow`` and
``--tensorboard`` say in one line how to install it and exit 1 before any data is read (the
ImportError is simulated); a tracker that fails never stops a search (one note, and it goes on)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli
from automl.tracking import StudyTracker, redact_uri
from tests.study._spaces import tiny_space


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli.app, args)


@pytest.mark.parametrize(("module", "option", "value"), [("mlflow", "--mlflow", "file:mlruns"),
                                                          ("tensorboard", "--tensorboard", "tb")])
@pytest.mark.parametrize("command", ["search", "worker", "compress"])
def test_missing_extra_is_one_line_before_any_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str,
                                                   option: str, value: str, command: str) -> None:
    if command == "compress" and module == "tensorboard":
        pytest.skip("compress has no --tensorboard")
    monkeypatch.setitem(sys.modules, module, None)  # ``import mlflow`` now raises ImportError
    missing = str(tmp_path / "no-such-data")  # data work would fail on this first, with another message
    args = {"search": ["search", "--task", "image", "--data", missing, "--out-dir", str(tmp_path)],
            "worker": ["worker", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "x",
                       "--out-dir", str(tmp_path)],
            "compress": ["compress", missing]}[command]
    proc = _invoke([*args, option, value])
    assert proc.exit_code == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"pip install 'automl[{module}]'" in lines[0] and option in lines[0]
    assert not (tmp_path / "none.db").exists() and not list(tmp_path.iterdir())  # nothing opened or created


def test_bad_tracking_values_are_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    proc = _invoke(["search", "--task", "image", "--tensorboard", str(afile), "--out-dir", str(tmp_path)])
    assert proc.exit_code == 1 and "is not a folder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _invoke(["search", "--task", "image", "--mlflow", " ", "--out-dir", str(tmp_path)])
    assert proc.exit_code == 1 and "tracking URI" in proc.stderr


class _Sink:
    """A tracker that fails at its ``fail_at``-th call."""

    name = "Fake"

    def __init__(self, fail_at: int) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if len(self.calls) == self.fail_at:
            raise ConnectionError("tracking server went away\nsecond line")

    def trial_start(self, number: int, params: dict) -> None:
        self._call("start")

    def epoch(self, number: int, record: dict) -> None:
        self._call("epoch")

    def trial_end(self, trial: Any) -> None:
        self._call("end")

    def close(self) -> None:
        self._call("close")


class _Display:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.notes: list[str] = []

    def on_trial_start(self, number: int, params: dict) -> None:
        self.events.append("start")

    def on_epoch(self, number: int, epoch: int, epochs: int, record: dict) -> None:
        self.events.append("epoch")

    def on_trial_end(self, trial: Any) -> None:
        self.events.append("end")

    def on_note(self, message: str) -> None:
        self.notes.append(message)

    def set_direction(self, direction: str, metric: str) -> str:
        return f"{direction} {metric}"


def test_a_failing_tracker_is_switched_off_with_one_note() -> None:
    broken, healthy = _Sink(fail_at=2), _Sink(fail_at=0)
    display = _Display()
    tracker = StudyTracker([broken, healthy], [])
    observer = tracker.wrap(display)
    observer.on_trial_start(0, {"lr": 0.1})
    for epoch in (1, 2, 3):
        observer.on_epoch(0, epoch, 3, {"val_metric": 0.5})
    observer.on_trial_end(object())
    tracker.close()
    assert display.events == ["start", "epoch", "epoch", "epoch", "end"]  # the display saw everything
    assert broken.calls == ["start", "epoch"]  # off after its failure
    assert healthy.calls == ["start", "epoch", "epoch", "epoch", "end", "close"]
    assert display.notes == tracker.notes
    assert display.notes == ["Fake logging stopped (ConnectionError: tracking server went away); "
                             "the search goes on without it"]
    assert observer.set_direction("maximize", "accuracy") == "maximize accuracy"  # the rest is the display's


def test_search_goes_on_when_mlflow_fails_mid_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from automl.tracking import mlflow_log

    def broken(self: Any, number: int, record: dict) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(mlflow_log.MlflowStudyLog, "epoch", broken)
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space())
    proc = _invoke(["search", "--task", "image", "--space", str(space), "--trials", "2", "--epochs", "1",
                    "--pruner", "none", "--device", "cpu", "--out-dir", str(tmp_path / "runs"), "--json",
                    "--mlflow", f"file:{tmp_path / 'mlruns'}"])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["n_complete"] == 2
    stopped = [n for n in result["notes"] if n.startswith("MLflow logging stopped")]
    assert stopped == ["MLflow logging stopped (OSError: No space left on device); the search goes on without it"]


def test_search_goes_on_when_the_server_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space())
    proc = _invoke(["search", "--task", "image", "--space", str(space), "--trials", "1", "--epochs", "1",
                    "--device", "cpu", "--out-dir", str(tmp_path / "runs"), "--json",
                    "--mlflow", f"http://user:secret@127.0.0.1:{port}"])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    off = [n for n in result["notes"] if n.startswith("MLflow logging to")]
    assert len(off) == 1 and "is off" in off[0] and "secret" not in off[0], result["notes"]
    assert Path(result["best_pt"]).is_file()


def test_redact_uri_hides_the_password() -> None:
    assert redact_uri("http://user:secret@host:5000/x") == "http://user:***@host:5000/x"
    assert redact_uri("postgresql://u:p%40ss@db/optuna") == "postgresql://u:***@db/optuna"
    assert redact_uri("file:/tmp/mlruns") == "file:/tmp/mlruns"


def test_importing_tracking_loads_no_heavy_library() -> None:
    """The study and compress packages import automl.tracking on every run: it must stay light."""
    import subprocess

    code = ("import sys, automl.tracking; "
            "print(','.join(m for m in ('mlflow', 'torch', 'optuna', 'tensorboard') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == ""
