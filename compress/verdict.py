"""What a compressed variant is, and the verdict on it: kept, rejected (accuracy, parity) or not faster.

The gate compares every variant with the original model's test metric and with the FP32 ONNX
model's median latency at batch 64 on the same execution provider, all measured in the same run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: a quantized variant must beat FP32 ONNX's p50 at batch 64 by this share to count as faster: closer
#: than that is within the run-to-run noise of a latency median on a busy machine
FASTER_MARGIN = 0.05


@dataclass
class Variant:
    """One compressed model file and what was measured about it."""

    name: str  # fp32 | pruned | int8 | pruned-int8 | fp16 | pruned-fp16
    kind: str  # fp32 | int8 | int8-dynamic | fp16
    base: str  # fp32 | pruned: the network it was made from
    path: str
    size_bytes: int = 0
    metric_value: float | None = None
    drop: float | None = None  # metric points lost against the original model (negative = gained)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    provider: str = "CPUExecutionProvider"
    other_latency_ms: dict[str, Any] = field(default_factory=dict)  # provider -> latency (CPU when on GPU)
    parity_max_abs_diff: float | None = None
    #: a quantized variant: max |its output - its FP32 network's output| over the test split (an anomaly
    #: model's score parity, a classifier's logit drift)
    output_max_abs_diff: float | None = None
    calibration: str | None = None  # static INT8: the calibration recipe chosen on validation
    kept_fp32: list[str] = field(default_factory=list)  # static INT8: layers (ONNX nodes) left in FP32
    speedup_vs_fp32: float | None = None  # p50 at batch 64, FP32 ONNX / this
    speedup_vs_torch: float | None = None  # p50 at batch 64, PyTorch eager / this
    size_ratio: float | None = None  # this / FP32 ONNX
    verdict: str = "kept"  # kept | rejected | not faster
    reason: str = ""
    recommended: bool = False
    target_latency_ms: float | None = None  # median on the study's latency target (best.pt's ``latency``)
    meets_budget: bool | None = None  # target_latency_ms <= the study's --max-latency-ms (None: no budget)

    def p50(self, batch: int = 64) -> float:
        return self.latency_ms.get(f"b{batch}", {}).get("p50", float("inf"))

    def to_json(self, metric: str) -> dict[str, Any]:
        row = asdict(self)
        row[metric] = self.metric_value
        row["file"] = Path(self.path).name
        return row


def metric_drop(ref: float, value: float, direction: str, metric: str) -> float:
    """Points lost against ``ref``: 100 x difference for a [0, 1] score to maximise (accuracy);
    percent worse, relative to ``ref``, for a metric to minimise (an error)."""
    if direction == "maximize":
        return 100.0 * (ref - value)
    return 100.0 * (value - ref) / max(abs(ref), 1e-12)


def gate(variants: list[Variant], ref: float, direction: str, metric: str, max_drop: float, parity_tol: float,
         torch_ms: dict[str, Any]) -> None:
    """Set verdicts: rejected (parity, accuracy) or not faster (quantized, not at least FASTER_MARGIN
    faster than FP32 ONNX at batch 64); the rest are kept."""
    fp32 = next(v for v in variants if v.name == "fp32")
    torch64 = torch_ms.get("b64", {}).get("p50")
    if not torch_ms.get("b64", {}).get("settled", True):  # issue 12: no speed-up from an unsettled reference
        torch64 = None
    fp32_settled = fp32.latency_ms.get("b64", {}).get("settled", True)
    for v in variants:
        v.drop = round(metric_drop(ref, v.metric_value or 0.0, direction, metric), 4)
        v.size_ratio = round(v.size_bytes / fp32.size_bytes, 4) if fp32.size_bytes else None
        v.speedup_vs_fp32 = round(fp32.p50() / v.p50(), 3) if v.p50() > 0 and fp32_settled else None
        v.speedup_vs_torch = round(torch64 / v.p50(), 3) if torch64 and v.p50() > 0 else None
        if v.parity_max_abs_diff is not None and v.parity_max_abs_diff > parity_tol:
            v.verdict, v.reason = "rejected", (f"ONNX logits differ from PyTorch by {v.parity_max_abs_diff:.2e} "
                                               f"(> {parity_tol:g})")
        elif v.drop > max_drop:
            unit = "points" if direction == "maximize" else "% (of the original)"  # metric_drop's units
            v.verdict, v.reason = "rejected", f"loses {v.drop:.2f} {metric} {unit} (> max drop {max_drop:g})"
        elif v.kind != "fp32" and v.p50() > (1.0 - FASTER_MARGIN) * fp32.p50():
            v.verdict = "not faster"
            v.reason = f"batch 64 p50 {v.p50():.3g} ms vs FP32 ONNX {fp32.p50():.3g} ms"
        else:
            v.verdict = "kept"
            v.reason = ("reference" if v.name == "fp32" else f"{v.speedup_vs_fp32:.2f}x FP32 ONNX speed, batch 64"
                        if v.speedup_vs_fp32 else "FP32 ONNX timing did not settle: no speed-up claimed")


def recommend(variants: list[Variant]) -> Variant:
    """The fastest kept variant at batch 64 (smaller file on a tie); FP32 ONNX when nothing else is kept."""
    kept = [v for v in variants if v.verdict == "kept"]
    if not kept:
        kept = [variants[0]]
    best = min(kept, key=lambda v: (v.p50(64), v.size_bytes))
    best.recommended = True
    return best
