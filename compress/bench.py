"""Measure a model variant: accuracy on the test split, file size, latency p50/p95 after a warm-up.

Latencies are wall-clock milliseconds per call of one batch; the GPU is synchronised before a timer
stops (ONNX Runtime's ``run`` returns host arrays, so it synchronises by itself).

The warm-up runs until the timings settle, not for a fixed count: a first call of PyTorch eager can
be 100x slower than the hundredth (allocator, thread pools, OpenMP spin-up), and a count that is
enough for one model is far too few for another. A measurement whose warm-up never settled, or whose
interleaved rounds disagree, is marked ``settled: False``, and no speed-up is computed from it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

BATCHES = (1, 64)
WINDOW = 5  # calls per warm-up window; the warm-up ends when two consecutive windows' medians agree
SETTLE_TOL = 0.10  # ... within 10% of each other
ROUNDS_TOL = 0.25  # timed rounds whose medians spread more than 25% of the overall median: not settled


@dataclass(frozen=True)
class BenchConfig:
    """How long to measure: at least ``warmup`` untimed calls and then until the timings settle (at most
    ``warmup_max_s`` seconds), then ``repeats`` timed calls per batch size."""

    warmup: int = 10
    repeats: int = 50
    warmup_max_s: float = 3.0  # most seconds of warm-up per runner and batch size before giving up
    batches: tuple[int, ...] = BATCHES
    threads: int = 0  # intra-op threads of ONNX Runtime and PyTorch; 0 = their defaults (all cores)


def percentiles(times_s: list[float]) -> dict[str, float]:
    """p50 and p95 of a list of seconds, in milliseconds."""
    arr = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"p50": round(float(np.percentile(arr, 50)), 4), "p95": round(float(np.percentile(arr, 95)), 4)}


def _median(xs: list[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


def warm_up(call: Callable[[], Any], min_calls: int, max_s: float, window: int = WINDOW,
            tol: float = SETTLE_TOL) -> dict[str, Any]:
    """Call ``call`` at least ``min_calls`` times, then in windows of ``window`` calls until two
    consecutive windows' median times differ by at most ``tol`` (relative) or ``max_s`` seconds have
    passed. Returns ``{"warmup_calls", "warmup_s", "settled"}``."""
    start = time.perf_counter()
    for _ in range(min_calls):
        call()
    n, prev = min_calls, None
    while True:
        times = []
        for _ in range(window):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        n += window
        med = _median(times)
        if prev is not None and abs(med - prev) <= tol * min(med, prev):
            settled = True
            break
        prev = med
        if time.perf_counter() - start > max_s:
            settled = False
            break
    return {"warmup_calls": n, "warmup_s": round(time.perf_counter() - start, 3), "settled": settled}


def rounds_spread(rounds: list[list[float]]) -> float | None:
    """(max - min) of the rounds' median times over the median of all times, in percent; None when
    the rounds are too short (under 3 calls) for their medians to mean anything."""
    rounds = [r for r in rounds if r]
    if len(rounds) < 2 or min(len(r) for r in rounds) < 3:
        return None
    meds = [_median(r) for r in rounds]
    overall = _median([t for r in rounds for t in r])
    return round(100.0 * (max(meds) - min(meds)) / overall, 1) if overall > 0 else None


def batch_of(x: torch.Tensor | np.ndarray, n: int) -> Any:
    """The first ``n`` rows of ``x``, repeated when ``x`` has fewer (real inputs, fixed batch)."""
    if len(x) >= n:
        return x[:n]
    reps = -(-n // max(1, len(x)))
    if hasattr(x, "repeat"):
        return x.repeat(reps, *([1] * (x.dim() - 1)))[:n]
    return np.concatenate([x] * reps)[:n]


Runner = Callable[[int], Callable[[], Any]]  # batch size -> a zero-argument call to time


def ort_runner(sess: Any, x: torch.Tensor | np.ndarray) -> Runner:
    """Calls of an ONNX Runtime session on the first ``b`` real rows of ``x``."""

    def make(b: int) -> Callable[[], Any]:
        xb = batch_of(x, b)
        feed = {"input": np.ascontiguousarray(xb.numpy() if hasattr(xb, "numpy") else xb)}
        return lambda: sess.run(["logits"], feed)

    return make


def torch_runner(model: nn.Module, x: torch.Tensor, device: str = "cpu", threads: int = 0) -> Runner:
    """Eager PyTorch calls (eval, inference mode) of ``model`` on the first ``b`` rows of ``x``.

    ``threads`` > 0 sets PyTorch's intra-op threads for the process (callers restore them).
    """
    import torch

    model = model.eval().to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None

    def make(b: int) -> Callable[[], Any]:
        xb = batch_of(x, b).to(device)
        if threads:
            torch.set_num_threads(threads)

        def call() -> Any:
            with torch.inference_mode():
                out = model(xb)
            if sync:
                sync()
            return out

        return call

    return make


def latencies(runners: dict[str, Runner], cfg: BenchConfig, rounds: int = 5) -> dict[str, dict[str, dict[str, float]]]:
    """``{name: {"b1": {"p50", "p95", "spread_pct", "warmup_calls", "settled"}, "b64": {...}}}`` in ms.

    ``spread_pct``: how far the medians of the interleaved rounds lie apart (percent of the median;
    None for rounds too short to tell); ``settled``: the warm-up settled and the rounds agree within
    ROUNDS_TOL. The runners are timed in interleaved blocks (``rounds`` blocks each, the order rotating), so a
    change of machine load during the measurement hits every variant alike and ratios stay fair;
    each block starts with a short re-warm-up, since the previous runner's threads (ONNX Runtime
    and OpenMP spin-wait) still occupy the cores for a moment after it returns.
    """
    names = list(runners)
    rounds = max(1, min(rounds, cfg.repeats))
    res: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    for b in cfg.batches:
        calls = {n: runners[n](b) for n in names}
        warm = {n: warm_up(calls[n], cfg.warmup, cfg.warmup_max_s) for n in names}
        times: dict[str, list[float]] = {n: [] for n in names}
        per_round: dict[str, list[list[float]]] = {n: [] for n in names}
        for r in range(rounds):
            per_block = cfg.repeats // rounds + (1 if r < cfg.repeats % rounds else 0)
            for k in range(len(names)):
                n = names[(r + k) % len(names)]
                for _ in range(max(1, cfg.warmup // rounds)):
                    calls[n]()
                block = []
                for _ in range(per_block):
                    t0 = time.perf_counter()
                    calls[n]()
                    block.append(time.perf_counter() - t0)
                times[n] += block
                per_round[n].append(block)
        for n in names:
            spread = rounds_spread(per_round[n])
            settled = warm[n]["settled"] and (spread is None or spread <= 100 * ROUNDS_TOL)
            res[n][f"b{b}"] = {**percentiles(times[n]), "spread_pct": spread,
                               "warmup_calls": warm[n]["warmup_calls"], "settled": settled}
    return res


def ort_latency(sess: Any, x: torch.Tensor | np.ndarray, cfg: BenchConfig) -> dict[str, dict[str, float]]:
    """Latency of one ONNX Runtime session at each batch size of ``cfg``, in ms."""
    return latencies({"m": ort_runner(sess, x)}, cfg)["m"]


def torch_latency(model: nn.Module, x: torch.Tensor, cfg: BenchConfig, device: str = "cpu") -> dict[str, Any]:
    """PyTorch eager latency of ``model`` at each batch size of ``cfg``, in ms."""
    import torch

    before = torch.get_num_threads()
    try:
        return latencies({"m": torch_runner(model, x, device, cfg.threads)}, cfg)["m"]
    finally:
        torch.set_num_threads(before)


def ort_logits(sess: Any, x: torch.Tensor | np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of a session for every row of ``x``, in batches."""
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    outs = [sess.run(["logits"], {"input": np.ascontiguousarray(arr[i : i + batch])})[0]
            for i in range(0, len(arr), batch)]
    return np.concatenate(outs).astype(np.float32) if outs else np.empty((0,), dtype=np.float32)


def ort_metric(sess: Any, x: torch.Tensor, y: torch.Tensor, metric_fn: Callable) -> float:
    """The task metric of an ONNX Runtime session on one split."""
    import torch

    return float(metric_fn(torch.from_numpy(ort_logits(sess, x)), y))


def file_size(path: str | Path) -> int:
    """Size in bytes of a model file (and its external data, if any, beside it)."""
    path = Path(path)
    size = path.stat().st_size
    data = path.with_suffix(path.suffix + ".data")
    return size + (data.stat().st_size if data.exists() else 0)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """A line's worth of facts about where the numbers were taken."""
    import onnxruntime as ort
    import torch

    from compress.quantize import cpu_features

    info: dict[str, Any] = {
        "cpu": cpu_name(), "cpu_features": cpu_features(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__), "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(), "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware_line(info: dict[str, Any]) -> str:
    """``hardware()`` as one human line."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    feats = info.get("cpu_features")
    isa = (", ISA " + " ".join(k for k, v in feats.items() if v) or "none of AVX2/AVX-512/VNNI") if feats else ""
    return (f"{info['cpu']} ({info['cpu_count']} logical cores, torch threads {info['torch_threads']}{isa}){gpu}; "
            f"torch {info['torch']}, onnxruntime {info['onnxruntime']}")
