"""`automl dashboard`: optuna-dashboard serves the study on loopback; bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.study.test_trials import assert_one_line_error, invoke, make_study

AUTOML = Path(sys.executable).with_name("automl")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_study(tmp_path_factory.mktemp("dash"), name="dash-study")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - a loopback URL we started
        return json.load(resp)


def test_dashboard_serves_the_study_on_loopback(synth: dict[str, Any]) -> None:
    from automl.study.dashboard import make_dashboard

    board = make_dashboard(synth["storage_url"], port=0, study="dash-study").start()
    try:
        assert board.host == "127.0.0.1" and board.port > 0
        base = f"http://127.0.0.1:{board.port}"
        summaries = get_json(f"{base}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "dash-study"]
        assert summary["directions"] == ["maximize"]
        assert board.study_url("dash-study") == f"{base}/dashboard/studies/{summary['study_id']}"
        detail = get_json(f"{base}/api/studies/{summary['study_id']}?after=0")
        states = sorted(t["state"] for t in detail["trials"])
        assert states == ["Complete", "Complete", "Complete", "Fail", "Pruned"]
        best = max(synth["values"].values())
        assert [b["values"][0] for b in detail["best_trials"]] == [best]
        with urllib.request.urlopen(f"{base}/dashboard", timeout=30) as resp:  # noqa: S310
            assert b"Optuna Dashboard" in resp.read()
    finally:
        board.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", board.port), timeout=2):
        pass  # the port is released


def test_dashboard_command_prints_its_url_and_stops_on_ctrl_c(synth: dict[str, Any]) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [str(AUTOML), "dashboard", "--storage", synth["storage_url"], "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()  # printed once the port is bound
        info = json.loads(line)
        assert info["host"] == "127.0.0.1" and info["url"].startswith("http://127.0.0.1:")
        assert set(info["studies"]) == {"dash-study"}
        names = [s["study_name"] for s in get_json(f"http://127.0.0.1:{info['port']}/api/studies")["study_summaries"]]
        assert names == ["dash-study"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == ""  # one JSON object on stdout, nothing else
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- bad input: one line on stderr, exit code 1 ---------------------------------------------------


def test_unknown_study_missing_and_empty_storage(synth: dict[str, Any], tmp_path: Path) -> None:
    import optuna

    assert_one_line_error(invoke("dashboard", "--storage", synth["storage_url"], "--study", "x", "--port", "0"),
                          "no study 'x'", "known: dash-study")
    assert_one_line_error(invoke("dashboard", "--out-dir", str(tmp_path / "none"), "--port", "0"), "no study database")
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)
    assert_one_line_error(invoke("dashboard", "--storage", url, "--port", "0"), "holds no studies")


def test_port_in_use(synth: dict[str, Any]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = invoke("dashboard", "--storage", synth["storage_url"], "--port", str(port))
        assert_one_line_error(r, f"cannot listen on 127.0.0.1:{port}", "--port")
