"""Issue 29, done-when 4 against a real ``mlflow server`` process (file backend, artifacts proxied by
the server, a free port on 127.0.0.1): ``automl search --mlflow http://…`` logs its trials there, and
``compress`` its variants and the ONNX model (uploaded through the server).
Skipped, with the reason, where the ``mlflow`` command is not installed (the optional extra).

Marked slow: the server takes 5-25 s to answer and the search runs beside it (about 2 minutes on a
loaded 2-core machine). ``pip install mlflow`` took 351 s in a fresh venv there (218 s on top of
automl's own dependencies), well over the minute the issue set for starting it in every CI run; CI
installs the extra and runs the file-store tests, ``pytest -m slow`` runs this one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from tests.study._spaces import tiny_space

pytest.importorskip("mlflow")

START_S = 120  # the server answers /health within this many seconds (about 5 s on an idle 2-core machine)


def _mlflow_command() -> list[str] | None:
    """The ``mlflow`` command of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("mlflow")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("mlflow")
    return [found] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tmp: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free port with a file backend; its URL once /health answers."""
    command = _mlflow_command()
    if command is None:
        pytest.skip("the mlflow command is not installed (pip install 'automl[mlflow]')")
    port = _free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below, after the process
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}  # MLflow 3 asks for it to serve a file backend
    proc = subprocess.Popen(
        [*command, "server", "--backend-store-uri", f"file:{tmp / 'store'}",
         "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        deadline = t0 + START_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited with {proc.returncode}: "
                                     f"{(tmp / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer /health within {START_S} s")
            time.sleep(0.25)  # polling a process that is starting, not a synchronisation
        sys.stderr.write(f"mlflow server answered after {time.monotonic() - t0:.1f} s\n")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_search_logs_to_a_real_mlflow_server(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text(tiny_space())
    with mlflow_server(tmp_path) as url:
        proc = CliRunner().invoke(cli.app, [
            "search", "--task", "image", "--space", str(space), "--trials", "2", "--epochs", "2", "--pruner", "none",
            "--device", "cpu", "--out-dir", str(tmp_path / "runs"), "--json", "--mlflow", url])
        assert proc.exit_code == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout)
        assert not [n for n in result["notes"] if "MLflow" in n], result["notes"]
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name(result["study"])
        runs = client.search_runs([exp.experiment_id])
        trials = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
        study_run = next(r for r in runs if r.data.tags.get("automl.role") == "study")
        assert sorted(r.info.run_name for r in trials) == ["0", "1"]
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study_run.info.run_id}
        for r in trials:
            assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [1, 2]
            assert "lr" in r.data.params and r.data.tags["state"] == "COMPLETE"
        # artifacts go through the server (proxied) into its artifacts folder
        assert {a.path for a in client.list_artifacts(study_run.info.run_id)} >= {"best.json", "search_result.json"}
        assert list((tmp_path / "artifacts").rglob("best.json"))
        # compress: its run, variants and the ONNX model (uploaded through the server) in the same experiment
        import mlflow

        from compress.pipeline import CompressSettings, run_compress

        report = run_compress(CompressSettings(checkpoint=result["best_pt"], finetune_epochs=1, quantize="int8",
                                               calibration="minmax", fallback=False, warmup=1, repeats=3, threads=1,
                                               device="cpu"), mlflow=url).report
        assert not [n for n in report["notes"] if "MLflow" in n], report["notes"]
        runs = client.search_runs([exp.experiment_id])
        variants = [r for r in runs if r.data.tags.get("automl.role") == "variant"]
        assert sorted(r.info.run_name for r in variants) == sorted(v["name"] for v in report["variants"])
        mlflow.set_tracking_uri(url)
        models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
        assert len(models) == 1
        assert mlflow.models.get_model_info(models[0].model_uri).signature.inputs.to_dict()[0]["tensor-spec"][
            "shape"] == (-1, 1, 8, 8)
