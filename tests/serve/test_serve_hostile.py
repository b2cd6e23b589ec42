"""``automl serve`` against hostile clients and hostile model files (issue 11, items 1-7), and the
raw-pixel JSON path (issue 12, item 4). Real servers on loopback ports, real HTTP."""

from __future__ import annotations

import csv
import io
import json
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from automl.serve.metrics import samples, value
from tests._onnx_helpers import ServerProcess, digit_pngs, export_checkpoint, task_checkpoint, tiny_digits_checkpoint


def png_bomb(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG of width x height pixels, compressed in a stream (a 13,000 x 13,000
    one is about 0.5 MB on disk and 500 MB decoded; building it never holds the pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy version 1.0 header declaring ``shape`` (no data after it)."""
    head = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    pad = 64 - (10 + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("hostile")
    ns = SimpleNamespace(dir=d)
    ns.image_pt = tiny_digits_checkpoint(d / "image.pt")
    ns.image = export_checkpoint(ns.image_pt, d / "image.onnx")
    ns.pngs = digit_pngs(d / "png", [0, 1, 2])
    with open(d / "texts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([("a great and lovely film", "pos"), ("dull boring mess", "neg")] * 20)
    ns.text = export_checkpoint(task_checkpoint("text", str(d / "texts.csv"), d / "text.pt",
                                                {"filters": 8, "embed_dim": 8}), d / "text.onnx")
    ns.wine = export_checkpoint(task_checkpoint("tabular", "wine", d / "wine.pt", {"width": 16}), d / "wine.onnx")
    return ns


@pytest.fixture(scope="module")
def image_server(art: SimpleNamespace) -> ServerProcess:
    srv = ServerProcess(art.image, "--threads", "1", "--header-timeout", "1", log=art.dir / "image.log")
    srv.start()
    yield srv
    assert srv.stop() == 0
    out = srv.output()
    for needle in ("Traceback", "DecompressionBomb", "multipart", "Skipping data"):
        assert needle not in out, out  # nothing of a hostile request reaches the server's stderr


def test_pixel_bomb_is_refused_from_its_header(image_server: ServerProcess) -> None:
    bomb = png_bomb(13_000, 13_000)
    assert len(bomb) < 1_000_000
    before = rss_mb(image_server.proc.pid)
    t0 = time.perf_counter()
    files = [("files", (f"bomb{i}.png", bomb, "image/png")) for i in range(3)]
    r = httpx.post(f"{image_server.url}/predict", files=files, timeout=60)
    seconds = time.perf_counter() - t0
    assert r.status_code == 413 and r.json()["error"] == "image_too_large", r.text
    assert "13000 x 13000" in r.json()["detail"]
    raw = httpx.post(f"{image_server.url}/predict", content=bomb, headers={"content-type": "image/png"}, timeout=60)
    assert raw.status_code == 413
    grown = rss_mb(image_server.proc.pid) - before
    assert seconds < 3.0, seconds  # decoding one would take ~5 s
    assert grown < 60, grown  # decoding one would take 500 MB


def test_decode_image_drafts_and_reduces_large_inputs(tmp_path: Path) -> None:
    from PIL import Image

    from automl.data.preprocess import decode_image
    from automl.exceptions import InputError

    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 10, 10)).save(buf, format="JPEG")
    img = decode_image(buf.getvalue(), target=(32, 32))
    assert max(img.size) <= 4 * 32 * 2 and min(img.size) >= 64  # far below 1600 x 1200, at least 2x the target
    assert decode_image(buf.getvalue()).size == (1600, 1200)
    with pytest.raises(InputError) as err:
        decode_image(buf.getvalue(), max_pixels=1_000_000)
    assert err.value.code == "image_too_large"


@pytest.mark.parametrize(("body", "status", "code"), [
    (npy_header((10**12, 1, 8, 8)) + b"\0" * 64, 413, "too_many_samples"),  # issue 11.2: was a 500 MemoryError
    (npy_header((10, 10**6, 10**6)) + b"\0" * 64, 422, "wrong_shape"),
    (npy_header((2, 1, 8, 8)) + b"\0" * 100, 400, "malformed_npy"),  # the data is shorter than declared
    (npy_header((1, 1, 8, 8), "|O") + b"\0" * 8, 422, "wrong_dtype"),
    (npy_header(()), 422, "wrong_shape"),
])
def test_npy_header_is_checked_before_allocating(image_server: ServerProcess, body: bytes, status: int,
                                                 code: str) -> None:
    r = httpx.post(f"{image_server.url}/predict", content=body, headers={"content-type": "application/x-npy"},
                   timeout=30)
    assert r.status_code == status and r.json()["error"] == code, r.text


def test_client_disconnect_is_499_not_500(image_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", image_server.port), timeout=5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + b'{"inputs": [' + b"0," * 5000)
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = httpx.get(f"{image_server.url}/metrics", timeout=10).text
        if value(text, "automl_requests_total", path="/predict", status="499") >= 1:
            break
        time.sleep(0.1)
    assert value(text, "automl_requests_total", path="/predict", status="499") == 1
    assert value(text, "automl_errors_total", code="client_disconnected") == 1
    assert not [k for k in samples(text) if ("status", "500") in k[1]]
    assert "Traceback" not in image_server.output()


def test_http_hygiene(image_server: ServerProcess) -> None:
    url = image_server.url
    r = httpx.get(f"{url}/predict", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"] == "method_not_allowed"
    r = httpx.post(f"{url}/health", timeout=10)
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    head = httpx.head(f"{url}/health", timeout=10)
    assert head.status_code == 200 and head.content == b""
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    predict = spec["paths"]["/predict"]["post"]
    assert {"application/json", "multipart/form-data", "application/x-npy"} <= set(predict["requestBody"]["content"])
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "head" in spec["paths"]["/health"]
    # a client that never finishes its headers is disconnected after --header-timeout (1 s here)
    with socket.create_connection(("127.0.0.1", image_server.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server
        assert time.monotonic() - t0 < 5
    # a multipart body the parser dislikes: a 400, and no parser line on the server's stderr (fixture)
    r = httpx.post(f"{url}/predict", content=b"--abc\r\ngarbage\r\n--abc--\r\nafter the end",
                   headers={"content-type": "multipart/form-data; boundary=abc"}, timeout=10)
    assert 400 <= r.status_code < 500


def test_500_bodies_carry_an_id_not_the_exception(art: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from starlette.testclient import TestClient

    from automl.serve import app as app_module
    from automl.serve.server import load_model
    from automl.serve.settings import ServeSettings

    settings = ServeSettings(model=str(art.image), threads=1).validate()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail /home/me/model")

    monkeypatch.setattr(app_module, "format_outputs", broken)
    with TestClient(app_module.create_app(load_model(settings), settings)) as client:
        r = client.post("/predict", json={"inputs": [[[[0.0] * 8] * 8]]})
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "secret" not in r.text and "RuntimeError" not in r.text
    error_id = r.json()["detail"].rsplit(" ", 1)[1]
    assert any(error_id in rec.getMessage() for rec in caplog.records)  # the log has it, under that id


def test_metadata_gives_preprocessing_and_raw_pixels_predict_like_uploads(image_server: ServerProcess,
                                                                          art: SimpleNamespace) -> None:
    from PIL import Image

    from automl.artifacts import load_checkpoint

    spec = load_checkpoint(art.image_pt)["preprocess"]
    meta = httpx.get(f"{image_server.url}/metadata", timeout=10).json()
    pre = meta["preprocess"]
    assert pre["channels"] == 1 and pre["size"] == [8, 8]
    assert pre["mean"] == pytest.approx(spec["mean"]) and pre["std"] == pytest.approx(spec["std"])
    pixels = [np.asarray(Image.open(p)).tolist() for p in art.pngs]  # 8 x 8 grey, 0-255
    raw = httpx.post(f"{image_server.url}/predict?top_k=10", json={"inputs": pixels, "pixels": "raw"}, timeout=30)
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in art.pngs]
    up = httpx.post(f"{image_server.url}/predict?top_k=10", files=files, timeout=30)
    assert raw.status_code == 200 and up.status_code == 200, (raw.text, up.text)
    assert raw.json() == up.json()  # exactly the same preprocessing
    plain = httpx.post(f"{image_server.url}/predict", json={"inputs": [[p] for p in pixels]}, timeout=30)
    assert plain.status_code == 200  # without "pixels": "raw" the same numbers are read as normalised tensors
    assert [p["probability"] for p in plain.json()["predictions"]] != [p["probability"] for p in
                                                                     raw.json()["predictions"]]
    for bad, code in (([[[300] * 8] * 8], "out_of_range"), ([[1, 2, 3]], "wrong_shape")):
        r = httpx.post(f"{image_server.url}/predict", json={"inputs": bad, "pixels": "raw"}, timeout=30)
        assert r.status_code == 422 and r.json()["error"] == code, r.text
    r = httpx.post(f"{image_server.url}/predict", json={"inputs": pixels, "pixels": "bytes"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameter"


def test_tabular_huge_integer_is_422_naming_the_field(art: SimpleNamespace) -> None:
    from sklearn.datasets import load_wine

    record = load_wine(as_frame=True).frame.drop(columns=["target"]).iloc[0].to_dict()
    with ServerProcess(art.wine, "--threads", "1", log=art.dir / "wine.log") as srv:
        huge = json.dumps({"inputs": [{**record, "alcohol": 10**400}]})
        r = httpx.post(f"{srv.url}/predict", content=huge, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422 and "alcohol" in r.json()["detail"], r.text
        longer = '{"inputs": [{"alcohol": ' + "9" * 5000 + "}]}"  # past Python's int-parsing limit
        r = httpx.post(f"{srv.url}/predict", content=longer, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 400 and r.json()["error"] == "malformed_json", r.text
        ok = httpx.post(f"{srv.url}/predict", json={"inputs": [record]}, timeout=30)
        assert ok.status_code == 200
        srv.stop()
        assert "Traceback" not in srv.output()


def test_text_15_mb_is_refused_without_stalling_health(art: SimpleNamespace) -> None:
    with ServerProcess(art.text, "--threads", "1", log=art.dir / "text.log") as srv:
        big = json.dumps({"inputs": ["great " * 2_500_000]}).encode()  # 15 MB
        result: dict[str, httpx.Response] = {}

        def send() -> None:
            result["r"] = httpx.post(f"{srv.url}/predict", content=big, headers={"content-type": "application/json"},
                                     timeout=60)

        worker = threading.Thread(target=send)
        worker.start()
        worst = 0.0
        while worker.is_alive():
            t0 = time.perf_counter()
            assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        worker.join()
        assert result["r"].status_code == 413 and result["r"].json()["error"] == "text_too_long", result["r"].text
        assert worst < 0.5, worst
        fine = httpx.post(f"{srv.url}/predict", json={"inputs": ["a great film " * 5000]}, timeout=30)
        assert fine.status_code == 200, fine.text  # 65,000 characters: under the cap, only max_len tokens read


def test_lazy_tokenizing_reads_only_max_len_tokens() -> None:
    from automl.data.text import encode_texts, tokenize

    spec = {"vocab": ["<pad>", "<unk>", "great"], "max_len": 4}
    assert tokenize("Great great GREAT great great", spec, limit=2) == ["great", "great"]
    t0 = time.perf_counter()
    ids = encode_texts(["great " * 2_000_000], spec)
    assert ids.tolist() == [[2, 2, 2, 2]] and time.perf_counter() - t0 < 1.0


def _with_meta(src: Path, dst: Path, key: str, edit: object) -> Path:
    import onnx

    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    value = edit(json.loads(props[key])) if callable(edit) else edit
    for p in proto.metadata_props:
        if p.key == key:
            p.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize(("which", "key", "edit", "needle"), [
    ("text", "automl.preprocess", lambda p: {**p, "token_pattern": "(a|aa)+$"}, "automl.preprocess.token_pattern"),
    ("text", "automl.preprocess", lambda p: {**p, "max_len": 10**9}, "automl.preprocess.max_len"),
    ("text", "automl.preprocess", lambda p: {**p, "vocab": "abc"}, "automl.preprocess.vocab"),
    ("image", "automl.preprocess", lambda p: {**p, "size": [100_000, 1]}, "automl.preprocess.size"),
    ("image", "automl.preprocess", lambda p: {k: v for k, v in p.items() if k != "size"}, "automl.preprocess.size"),
    ("image", "automl.preprocess", lambda p: {**p, "std": [0.0]}, "automl.preprocess.std"),
    ("image", "automl.preprocess", lambda p: {**p, "kind": "audio"}, "automl.preprocess.kind"),
    ("image", "automl.classes", "{not json", "automl.classes"),
    ("image", "automl.classes", lambda c: {"a": 1}, "automl.classes"),
    ("wine", "automl.preprocess", lambda p: {**p, "columns": [{"name": "x", "type": "numeric", "std": "big"}]},
     "automl.preprocess.columns[0]"),
])
def test_hostile_metadata_is_refused_at_start(art: SimpleNamespace, tmp_path: Path, which: str, key: str,
                                              edit: object, needle: str) -> None:
    from typer.testing import CliRunner

    import cli

    bad = _with_meta(getattr(art, which), tmp_path / "bad.onnx", key, edit)
    t0 = time.perf_counter()
    for argv in (["serve", str(bad), "--port", "0"], ["predict", str(bad), "x"]):
        res = CliRunner().invoke(cli.app, argv)
        assert res.exit_code == 1, (argv, res.output)
        assert needle in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert time.perf_counter() - t0 < 20


def test_api_key_flag_warns(art: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import cli

    monkeypatch.delenv("AUTOML_API_KEY", raising=False)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:  # a busy port stops the command right after the warning, before it serves
        res = CliRunner().invoke(cli.app, ["serve", str(art.image), "--api-key", "k", "--port",
                                           str(busy.getsockname()[1])])
    finally:
        busy.close()
    assert "AUTOML_API_KEY" in res.output and "visible" in res.output, res.output
