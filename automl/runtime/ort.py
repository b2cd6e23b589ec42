"""The one ONNX Runtime layer: the GPU probe, the execution providers and the InferenceSession factory.

``compress`` (measuring variants), ``serve`` and ``predict`` all open their sessions here, so a model
runs on the same providers with the same options wherever it is used. The CUDA execution provider is
requested only when ONNX Runtime has it *and* the machine has a GPU: asking for it on a machine
without one makes ONNX Runtime print warnings and fall back anyway.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from automl.exceptions import ArtifactError

if TYPE_CHECKING:
    import onnxruntime

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """GPUs the CUDA driver sees, asked through the driver library itself: milliseconds, and no torch
    import (which would cost a server seconds of start-up and hundreds of MB). 0 without a driver."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    count = ctypes.c_int(0)
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:
        return 0
    return int(count.value)


def gpu_present() -> bool:
    """True when the CUDA driver sees at least one GPU."""
    return gpu_count() > 0


def default_providers() -> list[str]:
    """CUDA first when ONNX Runtime has the CUDA provider and a GPU is present, else the CPU provider alone."""
    import onnxruntime as ort

    if CUDA in ort.get_available_providers() and gpu_present():
        return [CUDA, CPU]
    return [CPU]


def session_options(threads: int = 0, spinning: bool = True) -> onnxruntime.SessionOptions:
    """ONNX Runtime session options:

    - graph optimisation ``ORT_ENABLE_ALL`` (constant folding, fusions, layout changes), done once at load;
    - ``threads`` intra-op threads (0 = one per physical core, ORT's default); inter-op 1, sequential
      execution: our graphs are chains, parallel branches would only add scheduling;
    - ``spinning``: let idle pool threads spin between runs (lowest latency when the machine is ours);
      turn it off when sharing CPUs with other work (the HTTP event loop, other processes).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


def make_session(path: str | Path, providers: list[str] | None = None, threads: int = 0,
                 spinning: bool = True) -> onnxruntime.InferenceSession:
    """An ``onnxruntime.InferenceSession`` of ``path`` on ``providers`` (default: ``default_providers()``);
    an ArtifactError with ONNX Runtime's first line when it cannot load the file."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads, spinning),
                                    providers=providers or default_providers())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({first[:160]})") from None
