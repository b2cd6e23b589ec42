"""A binary ``--metric f1`` search stores a decision threshold (best.pt, best.json, the ONNX metadata,
the report), and ``predict`` and the served ``/predict`` apply it: a row whose positive-class
probability lies between 0.5 and the threshold gets the class the threshold says, with its probability."""

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
from tests._onnx_helpers import ServerProcess

SPACE = "params:\n  model: mlp\n  depth: 1\n  width: 16\n  lr: 0.01\n  batch_size: 64\n  optimizer: adamw\n"


def _records() -> list[dict]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from automl.study import SearchSettings, run_search

    d = tmp_path_factory.mktemp("f1")
    (d / "space.yaml").write_text(SPACE)
    res = run_search(SearchSettings(task="tabular", data="breast-cancer", metric="f1", space=str(d / "space.yaml"),
                                    trials=1, epochs=3, cv=0, pruner="none", out=str(d / "runs"), device="cpu"))
    return SimpleNamespace(dir=d, res=res, best_pt=Path(res.best_pt))


def test_a_binary_f1_search_stores_its_threshold(searched: SimpleNamespace) -> None:
    import optuna

    from automl.artifacts import load_checkpoint

    ckpt = load_checkpoint(searched.best_pt)
    t = ckpt["metrics"]["threshold"]
    assert 0.0 < t < 1.0 and ckpt["preprocess"]["decision_threshold"] == t
    positive = ckpt["metrics"]["positive_class"]
    assert ckpt["preprocess"]["positive_class"] == positive
    assert ckpt["preprocess"]["classes"][positive] == "malignant"  # the rarer class is the positive one
    best = json.loads((searched.best_pt.parent / "best.json").read_text())
    assert best["metrics"]["threshold"] == t
    # the test f1 is that of the thresholded test predictions best.json keeps
    from sklearn.metrics import f1_score

    tp = best["test_predictions"]
    assert f1_score(tp["y_true"], tp["y_pred"], pos_label=positive) == pytest.approx(best["metrics"]["test_f1"])
    study = optuna.load_study(study_name=searched.res.study, storage=searched.res.storage)
    assert study.user_attrs["best_test"]["threshold"] == t
    from automl.report import write_report

    html = Path(write_report(study, searched.dir / "r.html").path).read_text()
    assert "decision threshold" in html and f"{t:.4f}" in html
    assert any("decision threshold" in n for n in searched.res.notes)


def test_predict_and_serve_apply_the_threshold(searched: SimpleNamespace) -> None:
    """The stored threshold is moved past one row's probability, so that row's class is the
    threshold's and not the argmax's; predict (best.pt and ONNX) and a real server agree."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint, save_checkpoint
    from automl.runtime.export import export_onnx
    from automl.runtime.inference import raw_to_model_input, task_of
    from automl.runtime.onnx_meta import metadata_from_checkpoint, read_metadata

    ckpt = load_checkpoint(searched.best_pt)
    positive = ckpt["metrics"]["positive_class"]
    records = _records()
    x = torch.from_numpy(raw_to_model_input(records, ckpt["preprocess"]))
    with torch.no_grad():
        p = torch.softmax(model_from_checkpoint(ckpt)(x), 1)[:, positive].numpy()
    i = int(np.argmin(np.abs(p - 0.5) + (np.abs(p - 0.5) < 0.02)))  # a row near, not at, 0.5
    # threshold on the far side of p[i] from 0.5: argmax says one class, the threshold the other
    t = float(p[i] / 2) if p[i] < 0.5 else float((1 + p[i]) / 2)
    want = positive if p[i] >= t else 1 - positive
    assert want != (positive if p[i] >= 0.5 else 1 - positive)
    ckpt["preprocess"]["decision_threshold"] = t
    moved = searched.dir / "moved.pt"
    save_checkpoint(moved, ckpt)
    onnx_path = searched.dir / "moved.onnx"
    export_onnx(model_from_checkpoint(ckpt), task_of(ckpt["preprocess"]).example_input(ckpt["preprocess"], 2),
                onnx_path, metadata_from_checkpoint(ckpt))
    assert read_metadata(onnx_path)["preprocess"]["decision_threshold"] == t
    classes = ckpt["preprocess"]["classes"]
    for model in (moved, onnx_path):
        out = CliRunner().invoke(cli.app, ["predict", str(model), json.dumps(records[i]), "--json"])
        assert out.exit_code == 0, out.output
        row = json.loads(out.stdout)["predictions"][0]
        assert (row["label"], row["class_index"], row["threshold"]) == (classes[want], want, pytest.approx(t))
        assert row["probability"] == pytest.approx(p[i] if want == positive else 1 - p[i], abs=1e-5)
    with ServerProcess(onnx_path, "--threads", "1", log=searched.dir / "server.log") as srv:
        r = httpx.post(f"{srv.url}/predict", json={"inputs": [records[i]]}, timeout=30)
        assert r.status_code == 200, r.text
        row = r.json()["predictions"][0]
        assert (row["label"], row["class_index"]) == (classes[want], want)
        assert row["probability"] == pytest.approx(p[i] if want == positive else 1 - p[i], abs=1e-5)
        meta = httpx.get(f"{srv.url}/metadata", timeout=30).json()
        assert meta["decision_threshold"] == pytest.approx(t) and meta["positive_class"] == classes[positive]


def test_a_bad_threshold_in_a_model_file_is_refused(searched: SimpleNamespace) -> None:
    from automl.artifacts import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(searched.best_pt)
    ckpt["preprocess"]["decision_threshold"] = 7.0
    bad = searched.dir / "bad.pt"
    save_checkpoint(bad, ckpt)
    out = CliRunner().invoke(cli.app, ["predict", str(bad), json.dumps(_records()[0])])
    assert out.exit_code != 0 and "decision_threshold must be a number in (0, 1)" in out.stderr, out.output


def test_compress_gates_in_the_searched_metric_at_its_threshold(searched: SimpleNamespace) -> None:
    """compress scores every variant in the study's metric (f1, at the stored threshold): the original
    model's test f1 is best.json's."""
    out = CliRunner().invoke(cli.app, ["compress", str(searched.best_pt), "--json", "--prune-ratio", "0", "--quantize",
                                       "none", "--warmup", "1", "--repeats", "3", "--threads", "1"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    best = json.loads((searched.best_pt.parent / "best.json").read_text())
    assert report["metric"] == "f1"
    assert report["baseline"]["metric_value"] == pytest.approx(best["metrics"]["test_f1"], abs=1e-6)
    fp32 = next(v for v in report["variants"] if v["name"] == "fp32")
    assert fp32["f1"] == pytest.approx(best["metrics"]["test_f1"], abs=1e-6)
