"""Soak ``automl serve`` with good and hostile requests mixed, and check that it stays healthy.

    .venv/bin/python benchmarks/soak.py [MODEL.onnx] [--seconds 180] [--concurrency 32] [--threads 1]

Starts ``automl serve`` in its own process on a free loopback port (without MODEL: an untrained digits
CNN, 1x8x8), warms it up with good requests, records its RSS, then runs --concurrency clients for
--seconds, each picking requests at random from a fixed mix: good JSON tensors, PNG uploads, raw
pixels and .npy batches next to pixel bombs (13,000 x 13,000 PNG), lying .npy headers, malformed and
deeply nested JSON, NaN, wrong shapes, oversized bodies, a broken multipart body, wrong methods,
a 400-digit ``top_k`` and unknown query parameters, clients that disconnect mid-upload, clients that
never finish their headers, send 1 MiB of headers, or send a body one byte every 0.5 s (the server
runs with --header-timeout 2 --body-timeout 3). Afterwards it prints
the answers by status, the RSS before/after (each after 6 s idle, past the server's 5-s memory trim;
"before" after a 15-s warm-up of the whole mix) and the server log's tracebacks.

Pass criteria (exit code 1 otherwise): 0 answers 5xx, 0 tracebacks in the server log, RSS after within
20% of RSS before, every good request answered 200, every slow body answered 408 (and closed), no
huge header answered 2xx.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import random
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve import free_port, start_server, synthetic_model  # noqa: E402  (benchmarks/serve.py)

WARM_UP_SECONDS = 15.0  # of the full mix, before RSS is first measured
IDLE_SECONDS = 6.0  # before measuring RSS: longer than the server's memory trim period (5 s, automl.serve.app)


def png_bomb(width: int, height: int) -> bytes:
    """A valid black RGB PNG of width x height, built row by row (never holds the pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def lying_npy(shape: tuple[int, ...]) -> bytes:
    head = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    head += b" " * (64 - (10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + b"\0" * 64


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests(shape: tuple[int, ...]) -> dict[str, tuple[str, dict[str, Any], bool]]:
    """name -> (method, httpx request kwargs, whether it is a good request that must get 200)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    c, h, w = shape
    pixels = rng.integers(0, 256, size=(h, w) if c == 1 else (h, w, c)).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    bomb = png_bomb(13_000, 13_000)
    js = {"content-type": "application/json"}
    return {
        "good json": ("POST", {"json": {"inputs": x[:2].tolist()}}, True),
        "good png upload": ("POST", {"files": [("f", ("a.png", png.getvalue(), "image/png"))]}, True),
        "good raw pixels": ("POST", {"json": {"inputs": [pixels.tolist()], "pixels": "raw"}}, True),
        "good npy": ("POST", {"content": npy(x), "headers": {"content-type": "application/x-npy"}}, True),
        "pixel bomb": ("POST", {"files": [("f", ("b.png", bomb, "image/png"))] * 2}, False),
        "npy header lie": ("POST", {"content": lying_npy((10**12, *shape)),
                                    "headers": {"content-type": "application/x-npy"}}, False),
        "malformed json": ("POST", {"content": b'{"inputs": [[1, 2', "headers": js}, False),
        "deep json": ("POST", {"content": b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": js},
                      False),
        "huge int": ("POST", {"content": b'{"inputs": [' + b"9" * 5000 + b"]}", "headers": js}, False),
        "nan": ("POST", {"content": json.dumps({"inputs": [np.full(shape, np.nan).tolist()]}).encode(),
                         "headers": js}, False),
        "wrong shape": ("POST", {"json": {"inputs": [[1.0, 2.0]]}}, False),
        "body too large": ("POST", {"content": b'{"inputs": [' + b"0," * 1_200_000 + b"0]}", "headers": js}, False),
        "broken multipart": ("POST", {"content": b"--abc\r\ngarbage\r\n--abc--\r\nafter",
                                      "headers": {"content-type": "multipart/form-data; boundary=abc"}}, False),
        "wrong method": ("GET", {}, False),
        "unsupported type": ("POST", {"content": b"<x/>", "headers": {"content-type": "application/xml"}}, False),
        "huge top_k": ("POST", {"json": {"inputs": x[:1].tolist()}, "params": {"top_k": "9" * 400}}, False),
        "unknown query": ("POST", {"json": {"inputs": x[:1].tolist()}, "params": {"topk": "3"}}, False),
    }


async def disconnect_mid_upload(port: int) -> str:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000000\r\n\r\n" + b'{"inputs": [' + b"0," * 2000)
    await writer.drain()
    writer.close()
    return "disconnected"


async def never_finish_headers(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(100), timeout=30)
    except TimeoutError:
        return "half-open kept > 30 s"
    finally:
        writer.close()
    return "closed by server" if data == b"" else "answered"


async def huge_headers(port: int) -> str:
    """1 MiB of headers (the server's limit is 64 KiB): a 431, or a reset while still sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * (1 << 20) + b"\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(200), timeout=30)
    except (ConnectionError, TimeoutError) as exc:
        return exc.__class__.__name__
    finally:
        writer.close()
    return data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed by server"


async def slow_body(port: int, every: float = 0.5) -> str:
    """A body of 1,000 bytes sent one byte every ``every`` seconds: the server must answer 408 and
    close once --body-timeout has passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n")
    try:
        for _ in range(1000):
            try:
                data = await asyncio.wait_for(reader.read(200), timeout=every)
            except TimeoutError:
                writer.write(b" ")
                await writer.drain()
                continue
            return data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed by server"
    except ConnectionError as exc:
        return exc.__class__.__name__
    finally:
        writer.close()
    return "held for 500 s"


async def soak(port: int, pid: int, seconds: float, concurrency: int, shape: tuple[int, ...]) -> dict[str, Any]:
    import httpx

    rss: list[float] = []
    mix = requests(shape)
    names = list(mix)
    stats: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stop = time.monotonic() + seconds
    rng = random.Random(0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        async def worker() -> None:
            while time.monotonic() < stop:
                pick = rng.random()
                if pick < 0.03:
                    stats["disconnect mid-upload"][await disconnect_mid_upload(port)] += 1
                    continue
                if pick < 0.05:
                    stats["never finish headers"][await never_finish_headers(port)] += 1
                    continue
                if pick < 0.06:
                    stats["huge headers"][await huge_headers(port)] += 1
                    continue
                if pick < 0.07:
                    stats["slow body"][await slow_body(port)] += 1
                    continue
                name = rng.choice(names)
                method, kwargs, _ = mix[name]
                try:
                    r = await client.request(method, "/predict", **kwargs)
                    stats[name][str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    stats[name][exc.__class__.__name__] += 1

        async def sample_rss() -> None:
            while time.monotonic() < stop:
                await asyncio.sleep(10)
                rss.append(rss_mb(pid))

        await asyncio.gather(sample_rss(), *(worker() for _ in range(concurrency)))
    return {"stats": stats, "good": {n for n, (_, _, good) in mix.items() if good}, "rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="automl-soak-"))
    model = Path(args.model) if args.model else synthetic_model("digits", tmp / "digits.onnx")
    from automl.runtime.onnx_meta import read_metadata

    shape = tuple(read_metadata(model)["preprocess"]["input_shape"])
    port = free_port()
    log = tmp / "server.log"
    server_args = argparse.Namespace(max_batch=32, batch_wait_ms=2, threads=args.threads)
    proc = start_server(model, port, server_args, log, ("--max-body-mb", "2", "--header-timeout", "2",
                                                        "--body-timeout", "3"))
    try:
        import httpx

        for _ in range(200):  # warm-up: arenas, thread pools and caches reach their working size
            httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": np.zeros((2, *shape)).tolist()})
        good_only = rss_mb(proc.pid)
        # ... and every kind of request a few times: the first of each imports its code paths' modules
        # (PIL plugins, the multipart parser …) and sizes their caches once; what the soak must show is
        # that memory does not grow after that.
        asyncio.run(soak(port, proc.pid, WARM_UP_SECONDS, args.concurrency, shape))
        time.sleep(IDLE_SECONDS)
        before = rss_mb(proc.pid)
        t0 = time.monotonic()
        result = asyncio.run(soak(port, proc.pid, args.seconds, args.concurrency, shape))
        took = time.monotonic() - t0
        time.sleep(IDLE_SECONDS)
        after = rss_mb(proc.pid)
        alive = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text(errors="replace")
    stats, good = result["stats"], result["good"]
    total = sum(sum(c.values()) for c in stats.values())
    fivexx = sum(n for c in stats.values() for s, n in c.items() if s.startswith("5"))
    bad_good = sum(n for name in good for s, n in stats[name].items() if s != "200")
    print(f"soak: {took:.0f} s, {args.concurrency} clients, {total} requests ({total / took:.0f}/s)")
    for name in sorted(stats):
        print(f"  {name:24s} " + ", ".join(f"{s}: {n}" for s, n in sorted(stats[name].items())))
    tracebacks = text.count("Traceback")
    print(f"5xx answers: {fivexx}; good requests not 200: {bad_good}; tracebacks in the log: {tracebacks}")
    print("RSS every 10 s under load (MB): " + ", ".join(f"{r:.0f}" for r in result["rss"]))
    print(f"RSS after 200 good requests {good_only:.0f} MB, after the {WARM_UP_SECONDS:.0f}-s warm-up of every kind "
          f"{before:.0f} MB")
    print(f"RSS before {before:.0f} MB, after {after:.0f} MB ({(after / before - 1) * 100:+.1f}%); "
          f"healthy after: {alive}")
    limits_held = (set(stats["slow body"]) <= {"408"} and not any(s.startswith("2") for s in stats["huge headers"]))
    print(f"slow bodies all answered 408 and closed, huge headers never answered 2xx: {limits_held}")
    ok = fivexx == 0 and tracebacks == 0 and bad_good == 0 and after <= 1.2 * before and alive and limits_held
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
