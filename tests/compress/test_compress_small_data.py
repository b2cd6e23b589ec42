"""``automl compress`` on a small text set (154 training rows: fewer than the 256 calibration samples
and not a multiple of the calibration batch of 32) with default settings: every variant is written,
calibration batches are equal, and a calibration method that fails is skipped and named (issue 24.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._onnx_helpers import task_checkpoint
from tests.tasks.test_text import make_text_tsv

TEXTCNN = {"model": "textcnn", "embed_dim": 16, "filters": 8, "kernel_sizes": "2-3-4", "dropout": 0.1}


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``automl compress best.pt --json`` (defaults but a short timing) on a textcnn over 220 rows."""
    from typer.testing import CliRunner

    import cli
    from automl.tasks import DataConfig, get_task

    root = tmp_path_factory.mktemp("small_text")
    tsv = make_text_tsv(root / "t.tsv", n=220)
    assert len(get_task("text").load_data(DataConfig(source=str(tsv))).x_train) == 154
    best = task_checkpoint("text", str(tsv), root / "best.pt", TEXTCNN)
    res = CliRunner().invoke(cli.app, ["compress", str(best), "--json", "--finetune-epochs", "1", "--warmup", "1",
                                       "--repeats", "3", "--threads", "1"])
    return {"root": root, "code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr,
            "exception": res.exception}


def test_calibration_batches_are_equal_and_capped_to_the_rows_there_are() -> None:
    from automl.runtime.int8 import calib_plan, calibration_reader

    assert calib_plan(154, 256, 32) == (150, 30)  # 5 equal batches, 4 rows left out
    assert calib_plan(1000, 256, 32) == (256, 32)
    assert calib_plan(10, 256, 32) == (10, 10)
    assert calib_plan(1000, 100, 32) == (100, 25)
    x = np.arange(154 * 3, dtype=np.float32).reshape(154, 3)
    reader = calibration_reader(x, 256)
    batches = []
    while (b := reader.get_next()) is not None:
        batches.append(b["input"])
    assert [len(b) for b in batches] == [30] * 5
    assert np.asarray(batches).shape == (5, 30, 3)  # what ONNX Runtime's histogram calibrators do
    assert (reader.requested, reader.available, len(reader.index)) == (256, 154, 150)


def test_compress_on_154_rows_writes_every_variant_with_defaults(small_text: dict[str, Any]) -> None:
    assert small_text["code"] == 0, (small_text["stderr"], small_text["exception"])
    report = json.loads(small_text["stdout"])
    out = Path(report["out"])
    names = {v["name"] for v in report["variants"]}
    assert {"fp32", "int8"} <= names
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    q = report["quantization"]
    assert q["int8_method"] == "static" and q["calib_samples"] == 150 and q["calib_batches"] == 5
    tuning = q["int8_tuning"]["int8"]
    assert not tuning["failed"] and len(tuning["recipes"]) == 6  # every method ran on the equal batches
    assert any("150 of the 256 samples" in n for n in report["notes"])


def test_a_failing_calibration_method_is_skipped_and_named(small_text: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The entropy calibrator failing (as it did on ragged batches) leaves minmax and percentile."""
    from automl.artifacts import load_checkpoint
    from automl.runtime.int8 import calibration_reader
    from automl.tasks import DataConfig, get_task
    from compress import quantize
    from compress.int8tune import recipes_for, tune_int8

    real = quantize.calibration_method

    def broken(name: str) -> Any:
        if name == "entropy":
            raise ValueError("setting an array element with a sequence")
        return real(name)

    monkeypatch.setattr(quantize, "calibration_method", broken)
    root = small_text["root"]
    ckpt = load_checkpoint(root / "best.pt")
    x = get_task("text").load_data(DataConfig(**ckpt["data"])).x_train
    res = tune_int8(root / "compressed" / "model.onnx", root / "tuned.onnx", lambda: calibration_reader(x, 64),
                    lambda _p: 0.5, 0.5, "maximize", "accuracy", 1.0, recipes_for("auto"))
    assert res.recipe.calibration == "minmax" and (root / "tuned.onnx").is_file()
    assert res.failed_labels == ["entropy, per-channel", "entropy, per-tensor"]
    assert "setting an array element" in res.failed[0]["error"]
    assert [r["calibration"] for r in res.to_json()["recipes"] if "error" in r] == ["entropy", "entropy"]
    monkeypatch.setattr(quantize, "calibration_method", lambda _n: (_ for _ in ()).throw(ValueError("boom")))
    from automl.exceptions import ArtifactError

    with pytest.raises(ArtifactError, match="every INT8 calibration recipe failed") as info:
        tune_int8(root / "compressed" / "model.onnx", root / "t2.onnx", lambda: calibration_reader(x, 64),
                  lambda _p: 0.5, 0.5, "maximize", "accuracy", 1.0, recipes_for("auto"))
    # the cause chain is kept for --verbose: ArtifactError <- ArtifactError <- ValueError
    assert isinstance(info.value.__cause__.__cause__, ValueError)


def test_an_int8_failure_still_writes_the_fp32_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       small_text: dict[str, Any]) -> None:
    """Every calibration method failing: compress still writes and measures model.onnx, says why INT8
    is missing, and exits 0."""
    from typer.testing import CliRunner

    import cli
    from compress import quantize

    monkeypatch.setattr(quantize, "calibration_method", lambda _n: (_ for _ in ()).throw(ValueError("boom")))
    res = CliRunner().invoke(cli.app, ["compress", str(small_text["root"] / "best.pt"), "--json", "--out",
                                       str(tmp_path / "c"), "--prune-ratio", "0", "--warmup", "1", "--repeats", "2",
                                       "--threads", "1"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    report = json.loads(res.stdout)
    assert [v["name"] for v in report["variants"]] == ["fp32"]
    assert (tmp_path / "c" / "model.onnx").is_file() and not (tmp_path / "c" / "model.int8.onnx").exists()
    assert any(n.startswith("int8 skipped: every INT8 calibration recipe failed") for n in report["notes"])


def test_predict_names_pruned_int8_as_such(small_text: dict[str, Any], tmp_path: Path) -> None:
    """``predict --json`` said ``"variant": "int8"`` for what compress called pruned + INT8 (issue 24.8);
    a text server answers a bare number with what it expected."""
    from typer.testing import CliRunner

    import cli
    from automl.exceptions import InputError
    from automl.runtime.inference import OnnxModel

    out = tmp_path / "c"
    res = CliRunner().invoke(cli.app, ["compress", str(small_text["root"] / "best.pt"), "--json", "--out", str(out),
                                       "--max-drop", "100", "--calibration", "minmax", "--finetune-epochs", "0",
                                       "--no-fallback", "--warmup", "1", "--repeats", "2", "--threads", "1"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert {v["name"] for v in json.loads(res.stdout)["variants"]} >= {"int8", "pruned", "pruned-int8"}
    for file, variant in (("model.int8.onnx", "int8"), ("model.pruned.int8.onnx", "pruned-int8"),
                          ("model.pruned.onnx", "pruned")):
        got = CliRunner().invoke(cli.app, ["predict", str(out / file), "a great film", "--json"])
        assert got.exit_code == 0, got.output
        assert json.loads(got.stdout)["variant"] == variant, file
    with pytest.raises(InputError, match="expected a string"):
        OnnxModel(out / "model.onnx").input.from_json([42])
