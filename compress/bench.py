"""Measure a model variant: accuracy on the test split, file size, latency p50/p95 after a warm-up
(timed by ``automl.runtime.timing``, automl's one timing engine; this module holds compress's bench
settings, the PyTorch eager runner and the accuracy and hardware figures of the report).

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.runtime.timing import Call, Runner, batch_of, latencies, ort_runner

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch
    from torch import nn

__all__ = ["BATCHES", "BenchConfig", "cpu_name", "file_size", "hardware", "hardware_line", "latencies", "ort_latency",
           "ort_logits", "ort_metric", "ort_runner", "torch_latency", "torch_runner"]

BATCHES = (1, 64)


@dataclass(frozen=True)
class BenchConfig:
    """How long to measure: at least ``warmup`` untimed calls and then until the timings settle (at most
    ``warmup_max_s`` seconds), then ``repeats`` timed calls per batch size."""

    warmup: int = 10
    repeats: int = 50
    warmup_max_s: float = 3.0  # most seconds of warm-up per runner and batch size before giving up
    batches: tuple[int, ...] = BATCHES
    threads: int = 0  # intra-op threads of ONNX Runtime and PyTorch; 0 = their defaults (all cores)


def torch_runner(model: nn.Module, x: torch.Tensor, device: str = "cpu", threads: int = 0) -> Runner:
    """Eager PyTorch calls (eval, inference mode) of ``model`` on the first ``b`` rows of ``x``.

    ``threads`` > 0 sets PyTorch's intra-op threads for the process (callers restore them).
    """
    import torch

    model = model.eval().to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None

    def make(b: int) -> Call:
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


def ort_latency(sess: ort.InferenceSession, x: torch.Tensor | np.ndarray,
                cfg: BenchConfig) -> dict[str, dict[str, Any]]:
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


def ort_logits(sess: ort.InferenceSession, x: torch.Tensor | np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of a session for every row of ``x``, in batches."""
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    outs = [sess.run(["logits"], {"input": np.ascontiguousarray(arr[i : i + batch])})[0]
            for i in range(0, len(arr), batch)]
    return np.concatenate(outs).astype(np.float32) if outs else np.empty((0,), dtype=np.float32)


def ort_metric(sess: ort.InferenceSession, x: torch.Tensor, y: torch.Tensor, metric_fn: Callable) -> float:
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
