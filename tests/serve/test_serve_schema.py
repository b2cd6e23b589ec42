"""A schemathesis run against the schema ``automl serve`` publishes (``/openapi.json``): every
operation, including ``/predict``, is fuzzed over real HTTP and every check must pass.

Excluded: ``positive_data_acceptance``. The schema says what a request looks like (an ``inputs``
list of 1 to --max-samples samples, the content types, ``top_k`` >= 1), not which numbers the model
takes (sample shape, finite float32 values), so a schema-valid request may rightly get a 422."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._onnx_helpers import ServerProcess, export_checkpoint, tiny_digits_checkpoint

pytest.importorskip("schemathesis")


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    onnx_path = export_checkpoint(tiny_digits_checkpoint(tmp_path / "best.pt"), tmp_path / "model.onnx")
    with ServerProcess(onnx_path, "--threads", "1", "--max-samples", "16", log=tmp_path / "server.log") as srv:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{srv.url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "-n", "10", "-w", "1", "--max-time", "20",
             "--request-timeout", "20", "--generation-deterministic", "--warnings", "off"],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "5 selected / 5 total" in run.stdout  # /predict is in the schema with the others
        srv.stop()
        assert "Traceback" not in srv.output(), srv.output()[-3000:]
