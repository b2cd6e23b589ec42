"""The catboost family end to end, as ``hgb`` (tests/compress/test_hgb_pipeline.py): ``automl search``
with a space fixing ``model: catboost`` (breast-cancer, classification; diabetes, regression) ->
best.pt -> ``automl compress`` (pruning and quantization skipped with one note, the FP32 ONNX model
exported and measured) -> ``automl serve`` over real HTTP and ``automl predict``: outputs
equal the checkpoint's module within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests._onnx_helpers import ServerProcess

CASES = {"classification": "breast-cancer", "regression": "diabetes"}


@pytest.fixture(scope="module", params=sorted(CASES))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One search of one small CatBoost model, compress on its best.pt, and ten raw records with the
    checkpoint module's outputs for them (probabilities, or regression values)."""
    import torch

    import cli
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.tabular import read_table
    from automl.tasks import get_task

    family, data = "catboost", CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    space = root / "space.yaml"
    space.write_text("params:\n  model: catboost\n  catboost_iterations: 40\n  catboost_auto_lr: false\n"
                     "  catboost_learning_rate: 0.2\n  catboost_depth: {type: int, low: 3, high: 5}\n")
    search = CliRunner().invoke(cli.app, ["search", "--task", "tabular", "--data", data, "--space", str(space),
                                          "--trials", "1", "--out-dir", str(root), "--json"])
    assert search.exit_code == 0, (search.stderr, search.exception)
    result = json.loads(search.stdout)
    compress = CliRunner().invoke(cli.app, ["compress", result["best_pt"], "--json", "--warmup", "1", "--repeats",
                                            "3", "--threads", "1"])
    assert compress.exit_code == 0, (compress.stderr, compress.exception)
    ckpt = load_checkpoint(result["best_pt"])
    frame, target, _ = read_table(data)
    records = [{k: float(v) for k, v in r.items()} for r in frame.drop(columns=[target]).iloc[:10].to_dict("records")]
    x = get_task("tabular").encode_inputs(records, ckpt["preprocess"])
    with torch.no_grad():
        out = model_from_checkpoint(ckpt)(torch.from_numpy(x))
    regression = ckpt["arch"]["kind"] == "regression"
    expected = (out if regression else torch.softmax(out, dim=1)).numpy()
    return SimpleNamespace(family=family, search=result, report=json.loads(compress.stdout),
                           compress_err=compress.stderr, ckpt=ckpt, records=records, expected=expected,
                           regression=regression)


def _outputs(predictions: list[dict]) -> np.ndarray:
    """Per record: the regression value, or the probabilities in class order."""
    if "value" in predictions[0]:
        return np.array([[p["value"]] for p in predictions])
    return np.array([[q["probability"] for q in sorted(p["probabilities"], key=lambda q: q["class_index"])]
                     for p in predictions])


def test_search_keeps_the_fitted_model(run: SimpleNamespace) -> None:
    assert run.search["params"]["model"] == run.family and run.search["n_complete"] == 1
    arch = run.ckpt["arch"]
    assert arch["family"] == run.family and 1 <= arch["n_trees"] <= 40 and 3 <= arch["depth"] <= 5
    assert arch["kind"] == ("regression" if run.regression else "binary")
    if run.regression:
        assert run.search["test_rmse"] < 70  # diabetes: the target's std is 77
    else:
        assert run.search["best_value"] > 0.9 and run.search["test_accuracy"] > 0.9


def test_compress_says_trees_cannot_be_pruned_or_quantized_and_measures_fp32(run: SimpleNamespace) -> None:
    report = run.report
    (note,) = report["notes"]
    assert note.startswith("pruning and quantization skipped: channel pruning does not apply to a tree ensemble")
    assert "INT8/FP16 quantization does not apply" in note and note in " ".join(run.compress_err.split())
    assert [v["name"] for v in report["variants"]] == ["fp32"]
    fp32 = report["variants"][0]
    assert fp32["verdict"] == "kept" and fp32["parity_max_abs_diff"] <= 1e-5 * max(1.0, np.abs(run.expected).max())
    assert fp32["metric_value"] == pytest.approx(report["baseline"]["metric_value"], rel=1e-6)
    assert fp32["latency_ms"]["b1"]["p50"] > 0


def test_served_and_predicted_outputs_equal_the_checkpoint(run: SimpleNamespace, tmp_path: Path) -> None:
    import cli

    onnx_path = Path(run.report["recommended_copy"])
    tol = 1e-5 * max(1.0, float(np.abs(run.expected).max()))
    with ServerProcess(onnx_path, "--threads", "1", log=tmp_path / "server.log") as server:
        r = httpx.post(f"{server.url}/predict", json={"inputs": run.records}, timeout=60)
        assert r.status_code == 200, r.text
        served = _outputs(r.json()["predictions"])
    assert served.shape == run.expected.shape == (10, 1 if run.regression else 2)
    assert np.abs(served - run.expected).max() <= tol

    res = CliRunner().invoke(cli.app, ["predict", str(onnx_path), *map(json.dumps, run.records[:3]), "--json"])
    assert res.exit_code == 0, res.output
    assert np.abs(_outputs(json.loads(res.stdout)["predictions"]) - run.expected[:3]).max() <= tol
