"""``automl serve`` connection and query limits (issue 23, items 4 and 8): a huge ``top_k`` is a 422 on
every model, oversized headers get a 431 and a closed connection, a body that trickles in gets a 408
and a closed connection, and nothing a client sends gets a 5xx or a traceback in the server log.
Real servers on loopback ports with small limits (8 KiB of headers, 1 s for headers and bodies)."""

from __future__ import annotations

import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from automl.serve.metrics import samples, value
from tests._onnx_helpers import ServerProcess, export_checkpoint, task_checkpoint, tiny_digits_checkpoint

GOOD = json.dumps({"inputs": [[[[0.5] * 8] * 8]]}).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("limits")
    texts = d / "texts.csv"
    texts.write_text("text,label\n" + "a great and lovely film,pos\ndull boring mess,neg\n" * 20)
    return SimpleNamespace(
        dir=d,
        image=export_checkpoint(tiny_digits_checkpoint(d / "image.pt"), d / "image.onnx"),
        text=export_checkpoint(task_checkpoint("text", str(texts), d / "text.pt", {"filters": 8, "embed_dim": 8}),
                               d / "text.onnx"),
        wine=export_checkpoint(task_checkpoint("tabular", "wine", d / "wine.pt", {"width": 16}), d / "wine.onnx"),
    )


@pytest.fixture(scope="module")
def server(models: SimpleNamespace) -> ServerProcess:
    srv = ServerProcess(models.image, "--threads", "1", "--header-timeout", "1", "--body-timeout", "1",
                        "--max-header-kb", "8", log=models.dir / "server.log")
    srv.start()
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.output(), srv.output()[-3000:]


def exchange(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` on a fresh connection; read one whole answer, or until the server closes the
    connection (or ``timeout``)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            while not answered(out) and (chunk := s.recv(65536)):
                out += chunk
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
    return out


def final(out: bytes) -> bytes:
    """``out`` without the interim answers (``100 Continue``) before the final one."""
    while out.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in out:
        out = out.partition(b"\r\n\r\n")[2]
    return out


def answered(out: bytes) -> bool:
    """True once ``out`` holds a status line, headers and the Content-Length bytes of body."""
    head, sep, body = final(out).partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, size = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(size)
    return False


def status_of(answer: bytes) -> int | None:
    answer = final(answer)
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("which", ["image", "text", "wine"])
def test_huge_or_bad_top_k_is_422_on_every_model(models: SimpleNamespace, which: str) -> None:
    from starlette.testclient import TestClient

    from automl.serve.app import create_app
    from automl.serve.server import load_model
    from automl.serve.settings import ServeSettings

    settings = ServeSettings(model=str(getattr(models, which)), threads=1).validate()
    body = {"image": {"inputs": [[[[0.5] * 8] * 8]]}, "text": {"inputs": ["a great film"]},
            "wine": None}[which]
    model = load_model(settings)
    if body is None:
        body = {"inputs": [{c["name"]: 1.0 for c in model.meta["preprocess"]["columns"]}]}
    with TestClient(create_app(model, settings), raise_server_exceptions=False) as client:
        ok = client.post("/predict?top_k=2", json=body)
        assert ok.status_code == 200, ok.text
        for query in ("top_k=" + "9" * 309, "top_k=" + "9" * 5000, "top_k=1e400", "top_k=inf", "top_k=nan",
                      "top_k=0", "top_k=-1", "top_k=100001", "top_k=%EF%BC%93", "top_k=1&top_k=2", "topk=3",
                      "top_k=%00"):
            r = client.post(f"/predict?{query}", json=body)
            assert r.status_code == 422 and r.json()["error"] == "invalid_parameter", (query[:40], r.text)
            assert len(r.json()["detail"]) < 200


def test_oversized_headers_get_431_and_a_closed_connection(server: ServerProcess) -> None:
    filler = b"X-Fill: " + b"a" * 7000 + b"\r\n"  # under 8 KiB with the request line: answered
    ok = exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + filler + b"\r\n")
    assert status_of(ok) == 200, ok[:200]
    big = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Fill: " + b"a" * 20_000 + b"\r\n\r\n"
    answer = exchange(server.port, big)
    assert status_of(answer) == 431 and b"headers_too_large" in answer and b"8192 bytes" in answer, answer[:300]
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    assert status_of(exchange(server.port, many)) == 431
    # 32 MiB of headers, as in the probe: refused after the first 8 KiB, the connection closed, no growth
    before = rss_mb(server.proc.pid)
    huge = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * (32 << 20)
    t0 = time.monotonic()
    answer = exchange(server.port, huge)
    assert answer == b"" or status_of(answer) == 431, answer[:200]  # the 431, or a reset while still sending
    assert time.monotonic() - t0 < 30
    assert rss_mb(server.proc.pid) - before < 20
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert value(metrics, "automl_errors_total", code="headers_too_large") >= 3


def test_slow_body_gets_408_and_a_closed_connection(server: ServerProcess) -> None:
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(GOOD))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head)
        s.settimeout(0.25)
        answer, sent, t0 = b"", 0, time.monotonic()
        while time.monotonic() - t0 < 30:  # one byte every 0.25 s, until the server answers and closes
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                if sent < len(GOOD) - 1:  # never the last byte: the body stays incomplete
                    s.sendall(GOOD[sent:sent + 1])
                    sent += 1
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    assert status_of(answer) == 408 and b"body_timeout" in answer and b"within 1 s" in answer, answer[:300]
    assert sent < len(GOOD) - 1
    # an early answer (405 before any body byte) does not let the body trickle in for ever either
    answer = exchange(server.port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    assert status_of(answer) == 405
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert value(metrics, "automl_requests_total", path="/predict", status="408") >= 1
    assert value(metrics, "automl_errors_total", code="body_timeout") >= 1
    assert value(metrics, "automl_errors_total", code="client_disconnected") == 0


def hostile_requests(seed: int = 0, mutants: int = 120) -> list[bytes]:
    """Raw requests: hand-written protocol abuses and seeded random mutations of good requests."""
    js = b"Content-Type: application/json\r\n"

    def post(body: bytes, extra: bytes = js, path: bytes = b"/predict") -> bytes:
        return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body

    crafted = [
        post(GOOD, path=b"/predict?top_k=" + b"9" * 400),
        post(GOOD, path=b"/predict?top_k=%ff%fe&x=\xff"),
        post(GOOD, path=b"/predict?" + b"a=1&" * 1500),
        post(GOOD, path=b"/pre%00dict"), post(GOOD, path=b"/%"), post(GOOD, path=b"/\xc3\x28"),
        post(GOOD, path=b"http://evil/predict"), post(GOOD, path=b"*"),
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\r\n0\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"FOO /predict HTTP/1.1\r\nHost: x\r\n\r\n", b"G" * 5000 + b" / HTTP/1.1\r\n\r\n",
        b"GET /\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n",
        post(GOOD, js + b"Expect: 100-continue\r\n"), post(GOOD, b"Content-Type: multipart/form-data\r\n"),
        post(b"--" + b"b" * 5000 + b"\r\n", b"Content-Type: multipart/form-data; boundary=" + b"b" * 5000 + b"\r\n"),
        post(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"Content-Type: image/png\r\n"),
        post(b"\x93NUMPY\x03\x00" + b"\xff" * 50, b"Content-Type: application/x-npy\r\n"),
        post(GOOD, js + b"Content-Encoding: gzip\r\n"), post(GOOD, js + b"Authorization: Bearer \xff\xfe\r\n"),
        post(b'{"inputs": [[[[1e999]]]]}'), post(b'{"inputs": null}'), post(b'{"inputs": {"a": 1}}'),
        post(b'{"inputs": [[[[0.5]*8]*8]], "pixels": 12}'), post(b'{"inputs": [[[[true]]]], "pixels": "raw"}'),
        post(b'{"inputs": ["' + b"\\ud800" * 100 + b'"]}'), post(b"\xef\xbb\xbf" + GOOD), post(b"[" * 50_000),
    ]
    rng = random.Random(seed)
    bases = [post(GOOD), post(b'{"inputs": [[[[0, 255]]]], "pixels": "raw"}', path=b"/predict?top_k=3"),
             b"GET /metadata HTTP/1.1\r\nHost: x\r\n\r\n"]
    out = list(crafted)
    for n in range(mutants):
        data = bytearray(rng.choice(bases[:2] if n % 2 else bases))
        if n % 2:  # every other mutant keeps its headers: only the body is mutated (Content-Length fixed below)
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            op = rng.randrange(4)
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                del data[i:i + rng.randint(1, 8)]
            elif op == 2:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data[i:i] = data[i:i + rng.randint(1, 40)] * rng.randint(2, 50)
        if n % 2:
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"content-length")]
            data = bytearray(b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        out.append(bytes(data))
    return out


def test_no_client_input_gets_a_5xx(server: ServerProcess) -> None:
    requests = hostile_requests()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: exchange(server.port, data), requests))
    statuses = [status_of(a) for a in answers]
    assert not [(r[:80], s) for r, s in zip(requests, statuses, strict=True) if s is not None and s >= 500]
    assert sum(s is not None and 400 <= s < 500 for s in statuses) > len(requests) // 2  # they were answered
    assert httpx.post(f"{server.url}/predict", content=GOOD, headers={"content-type": "application/json"},
                      timeout=30).status_code == 200  # and it still serves
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert not [k for k in samples(metrics) if k[0] == "automl_requests_total" and ("status", "500") in k[1]]
    assert "Traceback" not in server.output()


def test_connection_limit_options_are_checked(tmp_path: Path) -> None:
    from automl.exceptions import ConfigError
    from automl.serve.settings import ServeSettings

    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # validate() looks at the options, not the file's content
    for bad, flag in (({"max_header_bytes": 10}, "--max-header-kb"), ({"body_timeout": 0.0}, "--body-timeout"),
                      ({"body_timeout": 1e6}, "--body-timeout")):
        with pytest.raises(ConfigError, match=flag):
            ServeSettings(model=str(model), **bad).validate()
