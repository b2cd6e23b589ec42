"""What an ensemble best.pt costs against its best member (``automl.models.ensemble``): the FP32
ensemble graph and the best member alone, exported the same way, timed interleaved by the same
engine (``automl.runtime.timing``) so the ratio holds on a busy machine, and on the study's latency
target too when best.pt carries one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch
    from torch import nn

    from compress.bench import BenchConfig
    from compress.verdict import Variant


def ensemble_latency(ckpt: dict[str, Any], model: nn.Module, variants: list[Variant],
                     sessions: dict[str, ort.InferenceSession], x: torch.Tensor, example: torch.Tensor,
                     cfg: BenchConfig, providers: list[str]) -> dict[str, Any] | None:
    """The report's ``ensemble`` section: members, the best member (the study's best single trial, or
    the heaviest), and p50 latencies per batch size of the ensemble (its FP32 variant) and of that
    member alone, with their ratio. None when best.pt is not an ensemble."""
    import tempfile
    from pathlib import Path

    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session
    from compress import bench

    arch = ckpt.get("arch") or {}
    if arch.get("family") != "ensemble" or not hasattr(model, "members"):
        return None
    members = len(model.members)
    lead = arch.get("best_member", 0)
    if isinstance(lead, bool) or not isinstance(lead, int) or not 0 <= lead < members:
        lead = 0
    fp32 = next((v for v in variants if v.name == "fp32"), variants[0])
    trials, families = arch.get("trials") or [], arch.get("member_families") or []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model.members[lead], example.cpu(), Path(tmp) / "best-member.onnx", {})
        sess = make_session(path, providers, cfg.threads)
        lat = bench.latencies({"ensemble": bench.ort_runner(sessions[fp32.name], x),
                               "best_member": bench.ort_runner(sess, x)}, cfg)
        target = _on_target(ckpt, fp32.path, str(path), x)
    ratio = {b: round(lat["ensemble"][b]["p50"] / lat["best_member"][b]["p50"], 3)
             for b in lat["ensemble"] if isinstance(lat["ensemble"][b], dict) and lat["best_member"][b].get("p50")}
    return {"members": members, "weights": [round(float(w), 6) for w in model.weights.tolist()],
            "best_member": {"index": lead, "trial": trials[lead] if lead < len(trials) else None,
                            "family": families[lead] if lead < len(families) else None},
            "latency_ms": {"ensemble": lat["ensemble"], "best_member": lat["best_member"]},
            "ratio_p50": ratio, "target_latency_ms": target}


def _on_target(ckpt: dict[str, Any], ensemble_path: str, member_path: str, x: torch.Tensor) -> dict[str, float] | None:
    """Both graphs timed on the study's latency target (best.pt's ``latency``), the lowest of a few timings."""
    from automl.exceptions import ConfigError
    from automl.runtime.latency import LatencySpec, time_onnx
    from compress.measure import BUDGET_TIMINGS

    raw = ckpt.get("latency")
    if not isinstance(raw, dict):
        return None
    try:
        spec = LatencySpec.from_dict({k: v for k, v in raw.items() if k != "measured"})
    except (ConfigError, TypeError):
        return None
    if spec is None:
        return None
    return {name: min(time_onnx(p, x, spec.target)[0] for _ in range(BUDGET_TIMINGS))
            for name, p in (("ensemble", ensemble_path), ("best_member", member_path))}
