"""Tabular and text models through the whole pipeline: search -> ``automl compress`` -> ``automl serve``
over real HTTP with raw records / raw strings; answers equal the PyTorch model's; bad input is a 4xx."""

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
from tests.tasks.test_text import make_text_tsv

CASES = {
    "tabular": {"space": "params:\n  depth: 1\n  width: 32\n  lr: 0.01\n  batch_size: 32\n",
                "data": lambda d: "wine", "bad": [{"alcohol": "very much"}]},
    "text": {"space": "params:\n  model: textcnn\n  embed_dim: 16\n  filters: 16\n  lr: 0.01\n  batch_size: 32\n",
             "data": lambda d: str(make_text_tsv(d / "t.tsv")), "bad": [""]},
    # the bag of n-grams (issue 26): its bigram hash runs inside the ONNX graph the server loads
    "text-ngram": {"space": "params:\n  model: ngram\n  ngrams: 2\n  buckets: 1000\n  embed_dim: 16\n  lr: 0.01\n"
                            "  batch_size: 32\n", "data": lambda d: str(make_text_tsv(d / "t.tsv")), "bad": [""]},
}


def raw_inputs(name: str) -> list:
    if name == "tabular":
        from sklearn.datasets import load_wine

        frame = load_wine(as_frame=True).frame.drop(columns=["target"]).sample(6, random_state=1)
        return json.loads(frame.to_json(orient="records"))
    return ["a great and lovely film", "dull boring mess", "great fun", "boring dull story"]


@pytest.fixture(scope="module", params=sorted(CASES))
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from automl.study import SearchSettings, run_search

    name = request.param
    d = tmp_path_factory.mktemp(name)
    space = d / "space.yaml"
    space.write_text(CASES[name]["space"])
    res = run_search(SearchSettings(task=name.split("-")[0], data=CASES[name]["data"](d), space=str(space), trials=1,
                                    epochs=3, pruner="none", out=str(d / "runs"), device="cpu"))
    out = CliRunner().invoke(cli.app, ["compress", res.best_pt, "--json", "--finetune-epochs", "1",
                                       "--warmup", "1", "--repeats", "3", "--calib-samples", "32"])
    assert out.exit_code == 0, out.output
    return SimpleNamespace(name=name, dir=d, best_pt=Path(res.best_pt), report=json.loads(out.stdout))


def test_compress_writes_onnx_that_matches_pytorch(pipeline: SimpleNamespace) -> None:
    folder = pipeline.best_pt.parent / "compressed"
    assert (folder / "model.onnx").is_file() and (folder / "compress_report.json").is_file()
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.runtime.inference import raw_to_model_input
    from automl.runtime.ort import make_session

    ckpt = load_checkpoint(pipeline.best_pt)
    x = raw_to_model_input(raw_inputs(pipeline.name), ckpt["preprocess"])
    with torch.no_grad():
        ref = model_from_checkpoint(ckpt)(torch.from_numpy(x)).numpy()
    got = make_session(folder / "model.onnx", ["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    assert np.abs(ref - got).max() <= 1e-4


def test_serve_answers_raw_inputs_like_pytorch(pipeline: SimpleNamespace) -> None:
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.runtime.inference import raw_to_model_input

    ckpt = load_checkpoint(pipeline.best_pt)
    raw = raw_inputs(pipeline.name)
    with torch.no_grad():
        ref = torch.softmax(model_from_checkpoint(ckpt)(torch.from_numpy(raw_to_model_input(raw, ckpt["preprocess"]))),
                            1).numpy()
    onnx_path = pipeline.best_pt.parent / "compressed" / "model.onnx"
    with ServerProcess(onnx_path, "--threads", "1", log=pipeline.dir / "server.log") as srv:
        r = httpx.post(f"{srv.url}/predict?top_k=1", json={"inputs": raw}, timeout=30)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["class_index"] for p in preds] == ref.argmax(1).tolist()
        assert [p["probability"] for p in preds] == pytest.approx(ref.max(1).tolist(), abs=1e-5)
        bad = httpx.post(f"{srv.url}/predict", json={"inputs": CASES[pipeline.name]["bad"]}, timeout=30)
        assert 400 <= bad.status_code < 500 and "detail" in bad.json(), bad.text
        again = httpx.post(f"{srv.url}/predict", json={"inputs": raw[:1]}, timeout=30)
        assert again.status_code == 200
