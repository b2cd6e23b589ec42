"""``automl serve`` end to end: the real server (uvicorn in a subprocess, free loopback port) and real
HTTP with httpx. Upload predictions equal ``automl predict`` and PyTorch; 200 concurrent requests are
micro-batched; every bad input is a 4xx JSON error and the server keeps serving; API key; SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from automl.serve.metrics import parse_histogram, samples, value
from tests._onnx_helpers import ServerProcess, digit_pngs, export_checkpoint, tiny_digits_checkpoint

MAX_SAMPLES = 64


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A trained digits best.pt, its ONNX export, 8 digit PNGs and the reference (PyTorch) outputs."""
    import torch

    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.images import load_digits
    from automl.data.preprocess import normalize, preprocess_image_files

    d = tmp_path_factory.mktemp("serve")
    best = tiny_digits_checkpoint(d / "best.pt")
    onnx_path = export_checkpoint(best, d / "model.onnx")
    idx = [0, 1, 2, 3, 4, 5, 6, 7]
    pngs = digit_pngs(d / "png", idx)
    ckpt = load_checkpoint(best)
    model = model_from_checkpoint(ckpt)
    spec = ckpt["preprocess"]
    with torch.no_grad():
        png_probs = torch.softmax(model(torch.from_numpy(preprocess_image_files([str(p) for p in pngs], spec))), 1)
        digits = load_digits()
        x = normalize(digits.x[:200], spec)  # already-preprocessed tensors for the JSON path
        x_probs = torch.softmax(model(torch.from_numpy(x)), 1)
    return SimpleNamespace(dir=d, best=best, onnx=onnx_path, pngs=pngs, labels=digits.y[idx].tolist(),
                           png_probs=png_probs.numpy(), x=x, x_probs=x_probs.numpy(), spec=spec)


@pytest.fixture(scope="module")
def server(art: SimpleNamespace) -> ServerProcess:
    srv = ServerProcess(art.onnx, "--max-batch", "32", "--batch-wait-ms", "20", "--max-body-mb", "1",
                        "--max-samples", str(MAX_SAMPLES), "--threads", "1", log=art.dir / "server.log")
    srv.start()
    yield srv
    code = srv.stop()
    assert code == 0, srv.output()
    assert "Traceback" not in srv.output(), srv.output()


def _good(server: ServerProcess, art: SimpleNamespace) -> None:
    r = httpx.post(f"{server.url}/predict", json={"inputs": art.x[:2].tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    got = [p["class_index"] for p in r.json()["predictions"]]
    assert got == art.x_probs[:2].argmax(1).tolist()


def test_upload_equals_predict_cli_and_pytorch(server: ServerProcess, art: SimpleNamespace) -> None:
    from typer.testing import CliRunner

    import cli

    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in art.pngs]
    r = httpx.post(f"{server.url}/predict", params={"top_k": 10}, files=files, timeout=30)
    assert r.status_code == 200, r.text
    served = r.json()["predictions"]
    assert len(served) == len(art.pngs)

    res = CliRunner().invoke(cli.app, ["predict", str(art.onnx), *map(str, art.pngs), "--top-k", "10", "--json"])
    assert res.exit_code == 0, res.output
    offline = json.loads(res.stdout)["predictions"]

    def probs(pred: dict) -> np.ndarray:
        out = np.zeros(10)
        for p in pred["probabilities"]:
            out[p["class_index"]] = p["probability"]
        return out

    for s, o, ref in zip(served, offline, art.png_probs, strict=True):
        assert s["label"] == o["label"] == str(int(ref.argmax()))
        assert s["class_index"] == o["class_index"]
        np.testing.assert_allclose(probs(s), probs(o), atol=1e-7)  # same file, same session type
        np.testing.assert_allclose(probs(s), ref, atol=1e-5)  # ONNX Runtime vs PyTorch
    accuracy = np.mean([int(s["label"]) == y for s, y in zip(served, art.labels, strict=True)])
    assert accuracy >= 0.75  # a trained model, not noise

    # a raw image body and the JSON path of already-preprocessed tensors agree with the upload
    raw = httpx.post(f"{server.url}/predict", content=art.pngs[3].read_bytes(),
                     headers={"content-type": "image/png"}, params={"top_k": 10}, timeout=30)
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(probs(raw.json()["predictions"][0]), probs(served[3]), atol=1e-7)
    js = httpx.post(f"{server.url}/predict", json={"inputs": art.x[:5].tolist()}, params={"top_k": 3}, timeout=30)
    assert js.status_code == 200, js.text
    for pred, ref in zip(js.json()["predictions"], art.x_probs[:5], strict=True):
        assert len(pred["probabilities"]) == 3
        assert pred["class_index"] == int(ref.argmax())
        assert pred["probability"] == pytest.approx(float(ref.max()), abs=1e-5)
    npy = httpx.post(f"{server.url}/predict", content=_npy(art.x[:5]), headers={"content-type": "application/x-npy"},
                     params={"top_k": 3}, timeout=30)
    assert npy.status_code == 200, npy.text
    assert npy.json() == js.json()  # same tensors, same session: the same answer to the last digit


def test_health_and_metadata(server: ServerProcess, art: SimpleNamespace) -> None:
    h = httpx.get(f"{server.url}/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok"
    m = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert m["task"] == "image"
    assert m["input"] == {"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}
    assert m["classes"] == [str(i) for i in range(10)]
    assert m["sha256"] == hashlib.sha256(art.onnx.read_bytes()).hexdigest()
    assert m["provider"] == "CPUExecutionProvider"
    assert m["serving"]["max_batch"] == 32


def test_200_concurrent_requests_are_batched(server: ServerProcess, art: SimpleNamespace) -> None:
    n = 200

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.post("/predict", json={"inputs": [art.x[i].tolist()]})
                                          for i in range(n)))

    before = parse_histogram(httpx.get(f"{server.url}/metrics", timeout=10).text, "automl_batch_size")
    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * n
    got = np.array([r.json()["predictions"][0]["class_index"] for r in responses])
    np.testing.assert_array_equal(got, art.x_probs[:n].argmax(1))  # each response is its own sample's
    p_got = np.array([r.json()["predictions"][0]["probability"] for r in responses])
    np.testing.assert_allclose(p_got, art.x_probs[:n].max(1), atol=1e-5)

    after = parse_histogram(httpx.get(f"{server.url}/metrics", timeout=10).text, "automl_batch_size")
    batches = after["_count"] - before.get("_count", 0)
    singles = after["1"] - before.get("1", 0)
    samples = after["_sum"] - before.get("_sum", 0)
    assert samples == n
    assert batches < n and singles < batches, (batches, singles)  # batches larger than 1 were formed
    assert samples / batches > 1.5


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


FIELD_ONLY = b'--abc\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--abc--\r\n'
MULTIPART_ABC = "multipart/form-data; boundary=abc"
BAD_INPUTS = [
    # (what, request kwargs, status, error code)
    ("malformed JSON", {"content": b'{"inputs": [[1, 2', "headers": {"content-type": "application/json"}},
     400, "malformed_json"),
    ("empty body", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ("no inputs key", {"json": {"samples": []}}, 422, "missing_inputs"),
    ("inputs not a list", {"json": {"inputs": "zero"}}, 422, "wrong_type"),
    ("empty inputs", {"json": {"inputs": []}}, 422, "no_inputs"),
    ("wrong shape", {"json": {"inputs": [[[0.0] * 8] * 8]}}, 422, "wrong_shape"),
    ("wrong shape, flat", {"json": {"inputs": [[0.0] * 64]}}, 422, "wrong_shape"),
    ("ragged", {"json": {"inputs": [[[[0.0] * 8] * 8], [[[0.0] * 7] * 8]]}}, 422, "wrong_shape"),
    ("strings", {"json": {"inputs": [[[["a"] * 8] * 8]]}}, 422, "wrong_dtype"),
    ("booleans", {"json": {"inputs": [[[[True] * 8] * 8]]}}, 422, "wrong_dtype"),
    ("null", {"json": {"inputs": [[[[None] * 8] * 8]]}}, 422, "wrong_dtype"),
    ("NaN", {"content": json.dumps({"inputs": [[[[float("nan")] * 8] * 8]]}).encode(),
             "headers": {"content-type": "application/json"}}, 422, "not_finite"),
    ("overflow", {"json": {"inputs": [[[[1e39] * 8] * 8]]}}, 422, "not_finite"),
    # More JSON inputs than the schema's maxItems is a validation error (a schemathesis check), not a size.
    ("too many samples", {"json": {"inputs": [[[[0.0] * 8] * 8]] * (MAX_SAMPLES + 1)}}, 422, "too_many_inputs"),
    ("body over the limit", {"content": b'{"inputs": [' + b"0," * 600_000 + b"0]}",
                             "headers": {"content-type": "application/json"}}, 413, "body_too_large"),
    ("not an image", {"files": [("file", ("notes.txt", b"hello, not a png", "text/plain"))]}, 422, "not_an_image"),
    ("truncated image", {"files": [("file", ("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))]},
     422, "not_an_image"),
    ("empty upload", {"files": [("file", ("empty.png", b"", "image/png"))]}, 422, "not_an_image"),
    ("multipart without files", {"content": FIELD_ONLY, "headers": {"content-type": MULTIPART_ABC}},
     422, "no_inputs"),
    ("broken multipart", {"content": b"garbage", "headers": {"content-type": "multipart/form-data"}},
     400, "malformed_multipart"),
    ("unsupported content type", {"content": b"<x/>", "headers": {"content-type": "application/xml"}},
     415, "unsupported_media_type"),
    ("malformed npy", {"content": b"\x93NUMPY garbage", "headers": {"content-type": "application/x-npy"}},
     400, "malformed_npy"),
    ("npy of the wrong shape", {"content": _npy(np.zeros((2, 8, 8), np.float32)),
                                "headers": {"content-type": "application/x-npy"}}, 422, "wrong_shape"),
    ("bad top_k", {"json": {"inputs": [[[[0.0] * 8] * 8]]}, "params": {"top_k": "many"}}, 422, "invalid_parameter"),
    ("zero top_k", {"json": {"inputs": [[[[0.0] * 8] * 8]]}, "params": {"top_k": "0"}}, 422, "invalid_parameter"),
]


def test_bad_inputs_get_4xx_json_and_server_keeps_serving(server: ServerProcess, art: SimpleNamespace) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for what, kwargs, status, code in BAD_INPUTS:
            r = client.post("/predict", **kwargs)
            assert r.status_code == status, (what, r.status_code, r.text)
            body = r.json()
            assert body["error"] == code, (what, body)
            assert isinstance(body["detail"], str) and len(body["detail"]) > 10, (what, body)
            _good(server, art)  # still serving after each
        r = client.get("/predict")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        r = client.get("/nope")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = httpx.get(f"{server.url}/metrics", timeout=10)
    assert r.headers["content-type"].startswith("text/plain")  # Prometheus text exposition, not JSON
    text = r.text
    assert value(text, "automl_errors_total", code="not_finite") == 2
    assert not [k for k in samples(text) if ("status", "500") in k[1]]
    assert value(text, "automl_inference_seconds_count") > 0
    assert any(k[0] == "automl_request_latency_seconds_bucket" for k in samples(text))


def test_api_key_and_graceful_sigterm(art: SimpleNamespace) -> None:
    """401 without the key; SIGTERM while requests wait in a batch: they are answered, exit code 0."""
    srv = ServerProcess(art.onnx, "--batch-wait-ms", "1500", "--threads", "1", log=art.dir / "server_key.log",
                        env={"AUTOML_API_KEY": "s3cret"})
    srv.start()
    try:
        good = {"inputs": [art.x[0].tolist()]}
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200  # open for probes
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = httpx.post(f"{srv.url}/predict", json=good, headers=headers, timeout=10)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert httpx.get(f"{srv.url}/metadata", timeout=10).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}

        results: list[int] = []

        def call(i: int) -> None:
            r = httpx.post(f"{srv.url}/predict", json={"inputs": [art.x[i].tolist()]}, headers=auth, timeout=30)
            results.append(r.status_code if r.json()["predictions"][0]["class_index"] == art.x_probs[i].argmax()
                           else -1)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until all four wait in the batch queue
            m = httpx.get(f"{srv.url}/metrics", headers=auth, timeout=10).text
            if value(m, "automl_queue_samples") == 4:
                break
            time.sleep(0.02)
        srv.terminate()
        for t in threads:
            t.join(30)
        assert results == [200] * 4
        assert srv.stop() == 0
        assert "stopped by SIGTERM" in srv.output()
    finally:
        srv.stop()


def test_serve_refuses_bad_files(tmp_path: Path, art: SimpleNamespace) -> None:
    from typer.testing import CliRunner

    import cli

    runner = CliRunner()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    for argv, needle in (
        (["serve", str(bogus)], "not a readable ONNX file"),
        (["serve", str(tmp_path / "missing.onnx")], "no such file"),
        (["serve", str(art.best)], "serve takes an .onnx file"),
        (["serve", str(art.onnx), "--max-batch", "0"], "--max-batch"),
        (["serve", str(art.onnx), "--port", str(busy.getsockname()[1])], "already in use"),
    ):
        res = runner.invoke(cli.app, argv)
        assert res.exit_code == 1, (argv, res.output)
        assert needle in res.output, (argv, res.output)
    busy.close()
