"""What the one-shot ``automl compress`` measures of every variant the stages made: test accuracy and
size (``measure_new``), latency beside PyTorch eager (``measure_latency``) and, when best.pt carries
the study's latency budget, the time on that target (``budget_stage``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from compress.bench import BenchConfig
from compress.verdict import Variant

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn

    from automl.tasks import DataBundle
    from compress.context import CompressContext


def measure_new(ctx: CompressContext) -> None:
    """Test metric and size of every variant of ``ctx`` not measured yet (its session is kept in
    ``ctx.sessions`` for the latency measurement)."""
    assert ctx.metric_fn is not None
    import numpy as np

    for v in ctx.variants:
        if v.name not in ctx.sessions:
            ctx.obs.on_stage(f"measuring {v.name} accuracy")
            ctx.sessions[v.name], out = measure_accuracy(v, ctx.bundle, ctx.metric_fn, ctx.providers,
                                                         ctx.settings.threads)
            ctx.outputs[v.name] = out
            base = ctx.outputs.get(v.base)
            if v.kind != "fp32" and base is not None and base.shape == out.shape and out.size:
                v.output_max_abs_diff = float(np.abs(out.astype(np.float64) - base).max())


def measure_accuracy(v: Variant, bundle: DataBundle, metric_fn: Callable[..., float], providers: list[str],
                     threads: int = 0) -> tuple[ort.InferenceSession, np.ndarray]:
    """Fill size and test metric of ``v``; returns its ONNX Runtime session (on the first provider)
    and its outputs on the test split."""
    import torch

    from automl.runtime.ort import make_session
    from compress import bench

    sess = make_session(v.path, providers, threads)
    v.provider = sess.get_providers()[0]
    v.size_bytes = bench.file_size(v.path)
    out = bench.ort_logits(sess, bundle.x_test)
    v.metric_value = float(metric_fn(torch.from_numpy(out), bundle.y_test))
    return sess, out


def measure_latency(variants: list[Variant], sessions: dict[str, ort.InferenceSession], model: nn.Module,
                    x: torch.Tensor, cfg: BenchConfig, device: str) -> dict[str, Any]:
    """Latency of every variant and of PyTorch eager, timed interleaved; returns PyTorch's. On a GPU
    each variant is also timed on the CPU provider."""
    import torch

    from automl.runtime.ort import make_session
    from compress import bench

    runners = {v.name: bench.ort_runner(sessions[v.name], x) for v in variants}
    runners["pytorch"] = bench.torch_runner(model, x, device, cfg.threads)
    before = torch.get_num_threads()
    try:
        lat = bench.latencies(runners, cfg)
    finally:
        torch.set_num_threads(before)
    for v in variants:
        v.latency_ms = lat[v.name]
    on_gpu = [v for v in variants if v.provider != "CPUExecutionProvider"]
    if on_gpu:
        cpu = bench.latencies({v.name: bench.ort_runner(make_session(v.path, ["CPUExecutionProvider"], cfg.threads), x)
                               for v in on_gpu}, cfg)
        for v in on_gpu:
            v.other_latency_ms = {"CPUExecutionProvider": cpu[v.name]}
    model.cpu()
    return lat["pytorch"]


BUDGET_TIMINGS = 5  # timings of each variant against a study's latency budget (the lowest counts)


def budget_stage(variants: list[Variant], ckpt: dict[str, Any], x: torch.Tensor,
                 checkpoint: str) -> dict[str, Any] | None:
    """Time every variant on the latency target of the study best.pt came from (its ``latency`` key,
    when it was searched with ``--max-latency-ms``), the way the search timed its trials, and say
    whether each meets the budget. None when best.pt has no budget; ArtifactError when it is malformed."""
    from automl.exceptions import ArtifactError, ConfigError
    from automl.runtime.latency import LatencySpec, time_onnx

    raw = ckpt.get("latency")
    if raw is None:
        return None
    try:
        spec = LatencySpec.from_dict({k: v for k, v in raw.items() if k != "measured"} if isinstance(raw, dict)
                                     else raw)
    except (ConfigError, TypeError) as exc:
        raise ArtifactError(f"{checkpoint}: unusable 'latency' entry ({exc})") from exc
    if spec is None or spec.max_latency_ms is None:
        return None
    for v in variants:
        # The lowest of BUDGET_TIMINGS timings (each the lowest round median of its own session): on a
        # shared machine one timing of a 20-µs network read 0.021 or 0.033 ms depending on the 0.3-s
        # stretch it fell in, and a budget check wants the network's own latency, not its neighbours'.
        v.target_latency_ms = min(time_onnx(v.path, x, spec.target)[0] for _ in range(BUDGET_TIMINGS))
        v.meets_budget = bool(v.target_latency_ms <= spec.max_latency_ms)
    measured = raw.get("measured") if isinstance(raw.get("measured"), dict) else {}
    search_ms = measured.get("latency_ms")
    return {"max_latency_ms": spec.max_latency_ms, "target": spec.target.to_dict(),
            "search_latency_ms": float(search_ms) if isinstance(search_ms, (int, float)) else None,
            "meets": [v.name for v in variants if v.meets_budget]}
