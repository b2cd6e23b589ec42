"""``automl serve`` throughput next to its ceiling: ``session.run`` called directly with the same batches.

    .venv/bin/python benchmarks/serve.py [MODEL.onnx] [--preset digits|cifar|wide] [--duration 5]
        [--concurrency 1 8 32 64] [--max-batch 32] [--batch-wait-ms 2] [--threads 0] [--payload json|npy|png]

Starts ``automl serve`` in its own process on a free loopback port, then from this process drives
``POST /predict`` (one sample per request: a JSON tensor, a ``.npy`` body or a PNG upload) with N
keep-alive connections for a fixed time at each concurrency level, after a warm-up. For each level
it prints requests/s, p50/p99 latency and the mean batch size the server formed (read from
``/metrics``), then, right away and with the server idle, times ``session.run`` called directly
(same session options, same thread count) at that batch size: the ceiling in samples/s.
``ratio`` = served requests/s / ceiling.

Without MODEL it exports an untrained CNN (weights do not change the speed): ``digits`` 1x8x8 with
widths 8/16 (tiny: HTTP dominates), ``cifar`` 3x32x32 with 32/64/128, ``wide`` 3x32x32 with 64/128/256.
Traffic is loopback only, bounded by --duration per level.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = {
    "digits": ((1, 8, 8), {"depth": 2, "width": 8}),
    "cifar": ((3, 32, 32), {"depth": 3, "width": 32}),
    "wide": ((3, 32, 32), {"depth": 3, "width": 64}),
}


def synthetic_model(preset: str, out: Path) -> Path:
    """An untrained CNN of the preset's shape, exported with automl metadata."""
    import torch

    from automl.artifacts import make_checkpoint
    from automl.models import build_from_arch
    from automl.models.cnn import cnn_arch
    from automl.runtime.export import export_onnx
    from automl.runtime.onnx_meta import metadata_from_checkpoint

    shape, params = PRESETS[preset]
    torch.manual_seed(0)
    meta = {"input_shape": list(shape), "num_classes": 10, "classes": [str(i) for i in range(10)], "task": "image"}
    arch = cnn_arch({**params, "batch_norm": True}, meta)
    model = build_from_arch(arch).eval()
    spec = {"kind": "image", "channels": shape[0], "size": list(shape[1:]), "mean": [0.5] * shape[0],
            "std": [0.25] * shape[0], **meta}
    ckpt = make_checkpoint(task="image", arch=arch, model=model, preprocess=spec, data={}, metrics={})
    return export_onnx(model, torch.zeros((1, *shape)), out, metadata_from_checkpoint(ckpt, "fp32", preset))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, port: int, args: argparse.Namespace, log: Path,
                 extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    import httpx

    argv = [sys.executable, "-c", "import cli; cli.main()", "serve", str(model), "--port", str(port),
            "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms),
            "--threads", str(args.threads), *extra]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start within 60 s")


def request_bytes(port: int, body: bytes, content_type: str) -> bytes:
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _client(port: int, request: bytes, stop_at: float, record_from: float, lat: list[float],
                  fails: list[int]) -> None:
    """One keep-alive connection sending requests back to back (a minimal HTTP/1.1 client: cheap on CPU)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (t0 := time.perf_counter()) < stop_at:
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if t0 >= record_from:
                lat.append(time.perf_counter() - t0)
                if b" 200 " not in status:
                    fails.append(1)
    finally:
        writer.close()


async def drive(port: int, request: bytes, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    lat: list[float] = []
    fails: list[int] = []
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + duration
    await asyncio.gather(*(_client(port, request, stop_at, record_from, lat, fails) for _ in range(concurrency)))
    ms = np.array(lat) * 1000
    return {"concurrency": concurrency, "requests": len(lat), "rps": len(lat) / duration, "errors": len(fails),
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan")}


def batch_stats(port: int) -> tuple[float, float]:
    import httpx

    from automl.serve.metrics import parse_histogram

    h = parse_histogram(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text, "automl_batch_size")
    return h.get("_sum", 0.0), h.get("_count", 0.0)


def ceiling(model: Path, x1: np.ndarray, batch: int, threads: int, seconds: float) -> float:
    """Samples/s of session.run called back to back on batches of ``batch`` (the server's session options)."""
    from automl.runtime.ort import make_session

    sess = make_session(model, ["CPUExecutionProvider"] if not _cuda() else None, threads, spinning=False)
    x = np.repeat(x1, batch, axis=0)
    name = sess.get_inputs()[0].name
    for _ in range(5):
        sess.run(None, {name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {name: x})
        n += 1
    return n * batch / (time.perf_counter() - t0)


def _cuda() -> bool:
    from automl.runtime.ort import default_providers

    return default_providers()[0] == "CUDAExecutionProvider"


def png_of(x1: np.ndarray) -> bytes:
    from PIL import Image

    img = np.clip(x1[0] * 0.25 + 0.5, 0, 1)
    arr = (img.transpose(1, 2, 0) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="an automl .onnx file (default: a synthetic CNN, see --preset)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cifar")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds measured per concurrency level")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of traffic before measuring")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--batch-wait-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (server and ceiling)")
    ap.add_argument("--payload", choices=("json", "npy", "png"), default="json",
                    help="request body: JSON tensor, numpy.save bytes, or a PNG file upload (multipart)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()

    import onnxruntime as ort

    from automl.runtime.onnx_meta import read_metadata

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    model = Path(args.model) if args.model else synthetic_model(args.preset, tmp / f"{args.preset}.onnx")
    shape = tuple(read_metadata(model)["preprocess"]["input_shape"])
    x1 = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    if args.payload == "png":
        boundary = "automlbench"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + png_of(x1) + f"\r\n--{boundary}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={boundary}"
    elif args.payload == "npy":
        buf = io.BytesIO()
        np.save(buf, x1)
        body, ctype = buf.getvalue(), "application/x-npy"
    else:
        body, ctype = json.dumps({"inputs": x1.tolist()}).encode(), "application/json"

    port = free_port()
    proc = start_server(model, port, args, tmp / "server.log")
    rows = []
    try:
        req = request_bytes(port, body, ctype)
        for c in args.concurrency:
            s0, n0 = batch_stats(port)
            row = asyncio.run(drive(port, req, c, args.duration, args.warmup))
            s1, n1 = batch_stats(port)
            row["mean_batch"] = (s1 - s0) / max(n1 - n0, 1)
            # The ceiling right after the level, with the server idle: on a shared machine the load
            # drifts, so measuring both close together keeps the ratio meaningful.
            b = max(1, round(row["mean_batch"]))
            row["ceiling_batch"] = b
            row["ceiling_sps"] = ceiling(model, x1, b, args.threads, min(args.duration, 2.0))
            row["ratio"] = row["rps"] / row["ceiling_sps"]
            rows.append(row)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    info = {"model": str(model) if args.model else f"synthetic {args.preset} CNN {shape}",
            "size_bytes": model.stat().st_size, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "load_avg": os.getloadavg(), "onnxruntime": ort.__version__,
            "payload": args.payload, "body_bytes": len(body), "max_batch": args.max_batch,
            "batch_wait_ms": args.batch_wait_ms, "threads": args.threads, "duration_s": args.duration}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print("  ".join(f"{k}={v}" for k, v in info.items()))
    print(f"{'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'batch':>6} "
          f"{'ceiling/s':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
              f"{r['mean_batch']:>6.1f} {r['ceiling_sps']:>10.0f} {r['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
