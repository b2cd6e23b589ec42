"""The anomaly task through the whole chain, on a small table and on a tiny image folder:
search -> ``automl compress`` -> ``automl serve`` (real HTTP, the INT8 model) -> ``automl predict``.

The served INT8 scores match the checkpoint's within ``INT8_TOL`` (relative to the score's size:
dynamic INT8 quantization rounds the weights of every layer), and ``is_anomaly`` is exactly
``score >= threshold`` with the threshold stored in best.pt."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cli
from tests._images import make_image_folder
from tests._onnx_helpers import ServerProcess
from tests.tasks.test_anomaly import make_anomaly_csv

#: |INT8 score - FP32 checkpoint score| <= INT8_TOL x max(1, |FP32 score|)
INT8_TOL = 0.1

CASES = {
    "table": {"space": "params:\n  model: ae\n  depth: 1\n  width: 32\n  bottleneck: 2\n  lr: 0.01\n  batch_size: 32\n",
              "epochs": 8, "args": {"target": "label"}},
    "images": {"space": "params:\n  model: convae\n  width: 8\n  lr: 0.01\n  batch_size: 16\n",
               "epochs": 4, "args": {"normal": ("class0",)}},
}


def _data(name: str, d: Path) -> str:
    if name == "table":
        return str(make_anomaly_csv(d / "t.csv", n=200, anomalies=16))
    return str(make_image_folder(d / "imgs", classes=2, per_class=30, size=12, split=False))


def _raw(name: str, data: str) -> tuple[list, list[str]]:
    """(what the server gets, what predict gets): 4 normal and 4 anomalous samples."""
    if name == "table":
        import pandas as pd

        frame = pd.read_csv(data)
        rows = pd.concat([frame[frame.label == "normal"][:4], frame[frame.label == "anomaly"][:4]])
        path = Path(data).with_name("rows.csv")
        rows.to_csv(path, index=False)
        return json.loads(rows.drop(columns=["label"]).to_json(orient="records")), [str(path)]
    files = [*sorted(Path(data, "class0").glob("*.png"))[:4], *sorted(Path(data, "class1").glob("*.png"))[:4]]
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in files], [str(p) for p in files]


@pytest.fixture(scope="module", params=sorted(CASES))
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from automl.study import SearchSettings, run_search

    name, case = request.param, CASES[request.param]
    d = tmp_path_factory.mktemp(f"anomaly-{name}")
    (d / "space.yaml").write_text(case["space"])
    data = _data(name, d)
    res = run_search(SearchSettings(task="anomaly", data=data, space=str(d / "space.yaml"), trials=1,
                                    epochs=case["epochs"], pruner="none", out=str(d / "runs"), device="cpu",
                                    **case["args"]))
    out = CliRunner().invoke(cli.app, ["compress", res.best_pt, "--json", "--finetune-epochs", "1",
                                       "--warmup", "1", "--repeats", "3", "--calib-samples", "32"])
    assert out.exit_code == 0, out.output
    return SimpleNamespace(name=name, dir=d, data=data, best_pt=Path(res.best_pt), report=json.loads(out.stdout),
                           test_metric=res.test_metric, study=res.study)


def _checkpoint_scores(chain: SimpleNamespace, predict_items: list[str]) -> tuple[np.ndarray, float]:
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.runtime.predict import read_inputs
    from automl.tasks import get_task

    ckpt = load_checkpoint(chain.best_pt)
    spec = ckpt["preprocess"]
    _, raw = read_inputs(predict_items, spec)
    x = get_task("anomaly").encode_inputs(raw, spec)
    with torch.no_grad():
        scores = model_from_checkpoint(ckpt)(torch.from_numpy(x)).numpy()
    return scores, float(spec["threshold"])


def test_search_chooses_a_threshold_and_detects_the_anomalies(chain: SimpleNamespace) -> None:
    from automl.artifacts import load_checkpoint

    spec = load_checkpoint(chain.best_pt)["preprocess"]
    assert isinstance(spec["threshold"], float) and "maximises F1 on the validation split" in spec["threshold_rule"]
    assert chain.test_metric >= 0.8  # test AUROC: the anomalies are far off the normal rows' structure
    best = json.loads((chain.best_pt.parent / "best.json").read_text())
    preds = best["test_predictions"]
    assert preds["y_pred"] == [int(s >= spec["threshold"]) for s in preds["scores"]]
    variants = {v["name"]: v for v in chain.report["variants"]}
    assert chain.report["metric"] == "roc_auc" and "int8" in variants  # the gate reads AUROC drops


def test_compress_reports_the_int8_score_parity(chain: SimpleNamespace) -> None:
    from automl.artifacts import load_checkpoint
    from automl.runtime.ort import make_session
    from automl.tasks import DataConfig, get_task
    from compress.bench import ort_logits

    variants = {v["name"]: v for v in chain.report["variants"]}
    bundle = get_task("anomaly").load_data(DataConfig(**load_checkpoint(chain.best_pt)["data"]))
    folder = chain.best_pt.parent / "compressed"
    fp32, int8 = (ort_logits(make_session(folder / f, ["CPUExecutionProvider"]), bundle.x_test)
                  for f in ("model.onnx", "model.int8.onnx"))
    assert variants["int8"]["output_max_abs_diff"] == pytest.approx(float(np.abs(int8 - fp32).max()), rel=1e-5)
    assert variants["fp32"]["output_max_abs_diff"] is None


def test_served_int8_scores_match_the_checkpoint_and_is_anomaly_follows_the_threshold(chain: SimpleNamespace) -> None:
    inputs, items = _raw(chain.name, chain.data)
    ref, threshold = _checkpoint_scores(chain, items)
    onnx_path = chain.best_pt.parent / "compressed" / "model.int8.onnx"
    with ServerProcess(onnx_path, "--threads", "1", log=chain.dir / "server.log") as srv:
        meta = httpx.get(f"{srv.url}/metadata", timeout=30).json()
        assert meta["preprocess"]["threshold"] == pytest.approx(threshold)
        assert "F1" in meta["preprocess"]["threshold_rule"]
        if chain.name == "table":
            r = httpx.post(f"{srv.url}/predict", json={"inputs": inputs}, timeout=30)
        else:
            r = httpx.post(f"{srv.url}/predict", files=inputs, timeout=30)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
    served = np.array([p["score"] for p in preds])
    assert np.all(np.abs(served - ref) <= INT8_TOL * np.maximum(1.0, np.abs(ref))), (served, ref)
    assert [p["is_anomaly"] for p in preds] == [bool(s >= threshold) for s in served]
    assert sum(p["is_anomaly"] for p in preds[4:]) >= 3  # the anomalous samples are flagged

    out = CliRunner().invoke(cli.app, ["predict", str(onnx_path), *items, "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["predictions"]
    assert [r["score"] for r in rows] == pytest.approx(served.tolist(), abs=1e-6)
    assert [r["is_anomaly"] for r in rows] == [p["is_anomaly"] for p in preds]


def test_report_draws_the_score_histograms_roc_curve_and_threshold(chain: SimpleNamespace) -> None:
    from sklearn.metrics import roc_auc_score

    out = CliRunner().invoke(cli.app, ["report", "--study", chain.study, "--out-dir", str(chain.best_pt.parent.parent),
                                       "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert "scores" in info["figures"] and "confusion_matrix" in info["figures"]
    page = Path(info["report"]).read_text(encoding="utf-8")
    preds = json.loads((chain.best_pt.parent / "best.json").read_text())["test_predictions"]
    auroc = roc_auc_score(preds["y_true"], preds["scores"])
    assert f"ROC curve (AUROC {auroc:.4f})" in page and f"threshold {preds['threshold']:.4g}" in page
