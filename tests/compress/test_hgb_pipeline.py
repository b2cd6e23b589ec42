"""Gradient-boosted trees end to end (issue 13, point 6): ``automl search`` with a space fixing
``model: hgb`` -> best.pt -> ``automl compress`` (pruning and quantization skipped with one note, the
FP32 ONNX model exported and measured) -> ``automl serve`` over real HTTP and ``automl predict``:
probabilities equal the checkpoint's module within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests._onnx_helpers import ServerProcess

SPACE = """params:
  model: hgb
  hgb_max_iter: 40
  hgb_learning_rate: {type: float, low: 0.05, high: 0.2, log: true}
  hgb_max_leaf_nodes: 31
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One search of one hgb trial on breast-cancer, then compress on its best.pt."""
    import cli

    root = tmp_path_factory.mktemp("hgb")
    space = root / "hgb.yaml"
    space.write_text(SPACE)
    search = CliRunner().invoke(cli.app, ["search", "--task", "tabular", "--data", "breast-cancer", "--space",
                                          str(space), "--trials", "1", "--out-dir", str(root), "--json"])
    assert search.exit_code == 0, (search.stderr, search.exception)
    result = json.loads(search.stdout)
    compress = CliRunner().invoke(cli.app, ["compress", result["best_pt"], "--json", "--warmup", "1", "--repeats",
                                            "3", "--threads", "1"])
    assert compress.exit_code == 0, (compress.stderr, compress.exception)
    return SimpleNamespace(root=root, search=result, report=json.loads(compress.stdout), compress_err=compress.stderr)


@pytest.fixture(scope="module")
def reference(run: SimpleNamespace) -> SimpleNamespace:
    """Ten raw records of the table and the checkpoint module's probabilities for them."""
    import torch

    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.tabular import read_table
    from automl.tasks import get_task

    ckpt = load_checkpoint(run.search["best_pt"])
    frame, target, _ = read_table("breast-cancer")
    records = frame.drop(columns=[target]).iloc[:10].to_dict("records")
    records = [{k: float(v) for k, v in r.items()} for r in records]
    x = get_task("tabular").encode_inputs(records, ckpt["preprocess"])
    with torch.no_grad():
        probs = torch.softmax(model_from_checkpoint(ckpt)(torch.from_numpy(x)), dim=1).numpy()
    return SimpleNamespace(records=records, probs=probs, ckpt=ckpt)


def _probs(predictions: list[dict]) -> np.ndarray:
    return np.array([[q["probability"] for q in sorted(p["probabilities"], key=lambda q: q["class_index"])]
                     for p in predictions])


def test_search_picks_hgb_and_best_pt_holds_the_fitted_ensemble(run: SimpleNamespace,
                                                                reference: SimpleNamespace) -> None:
    assert run.search["params"]["model"] == "hgb" and run.search["n_complete"] == 1
    arch = reference.ckpt["arch"]
    assert arch["family"] == "hgb" and arch["kind"] == "binary" and arch["n_iter"] <= 40
    assert run.search["best_value"] > 0.9 and run.search["test_accuracy"] > 0.9


def test_compress_says_trees_cannot_be_pruned_or_quantized_and_measures_fp32(run: SimpleNamespace) -> None:
    report = run.report
    (note,) = report["notes"]
    assert note.startswith("pruning and quantization skipped: channel pruning does not apply to a tree ensemble")
    assert "INT8/FP16 quantization does not apply" in note and note in " ".join(run.compress_err.split())
    assert [v["name"] for v in report["variants"]] == ["fp32"]
    fp32 = report["variants"][0]
    assert fp32["verdict"] == "kept" and fp32["parity_max_abs_diff"] <= 1e-5
    assert fp32["metric_value"] == pytest.approx(report["baseline"]["metric_value"], abs=1e-9)
    assert fp32["latency_ms"]["b1"]["p50"] > 0 and fp32["latency_ms"]["b64"]["p50"] > 0
    out = Path(report["out"])
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "best.onnx", "compress_report.json", "model.onnx"]
    assert report["quantization"]["skipped"] and report["prune"]["skipped"]


def test_served_and_predicted_probabilities_equal_the_checkpoint(run: SimpleNamespace, reference: SimpleNamespace,
                                                                 tmp_path: Path) -> None:
    import cli

    onnx_path = Path(run.report["recommended_copy"])
    with ServerProcess(onnx_path, "--threads", "1", log=tmp_path / "server.log") as server:
        r = httpx.post(f"{server.url}/predict", json={"inputs": reference.records}, timeout=60)
        assert r.status_code == 200, r.text
        served = _probs(r.json()["predictions"])
        meta = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert served.shape == reference.probs.shape == (10, 2)
    assert np.abs(served - reference.probs).max() <= 1e-5
    assert meta["output"] == "probabilities"

    res = CliRunner().invoke(cli.app, ["predict", str(onnx_path), *map(json.dumps, reference.records[:3]),
                                       "--json"])
    assert res.exit_code == 0, res.output
    assert np.abs(_probs(json.loads(res.stdout)["predictions"]) - reference.probs[:3]).max() <= 1e-5
