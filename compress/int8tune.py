"""Accuracy-aware static INT8: the calibration recipe chosen by measured validation accuracy, then
per-layer sensitivity and FP32 fallback until the variant is within ``max_drop``.

Everything here is measured on the validation split (the test split is kept for the final table):

1. Calibration: each recipe (MinMax / Entropy / Percentile calibration x per-channel / per-tensor
   weights) quantizes the whole graph; the one with the best validation metric wins (the earlier
   recipe in ``recipes`` on a tie). Ranges are calibrated once per method and cached.
2. If the winner still loses more than ``max_drop`` points, each weighted node (Conv, Gemm, MatMul
   with a weight initializer: one "layer") is quantized alone and its drop measured: its sensitivity.
3. The most sensitive layers stay FP32, one more at a time in order of sensitivity, until the
   variant is within ``max_drop`` (Intel Neural Compressor's fallback, measured the same way).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ArtifactError
from compress.quantize import CALIBRATIONS, preprocess_for_quantization, quantize_static_int8
from compress.verdict import metric_drop

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIBRATION_CHOICES = ("auto", *CALIBRATIONS)


@dataclass(frozen=True)
class Recipe:
    """How the whole graph is quantized: the calibration method and per-channel weights or not."""

    calibration: str = "minmax"
    per_channel: bool = True

    @property
    def label(self) -> str:
        return f"{self.calibration}, {'per-channel' if self.per_channel else 'per-tensor'}"


def recipes_for(calibration: str) -> list[Recipe]:
    """The recipes tried for a ``--calibration`` value: every method and both weight granularities
    for 'auto', the named method per channel (then per tensor) otherwise."""
    methods = CALIBRATIONS if calibration == "auto" else (calibration,)
    return [Recipe(m, pc) for m in methods for pc in (True, False)]


@dataclass
class TuneResult:
    """What the tuner did; ``path`` is the chosen INT8 graph (no metadata yet)."""

    path: Path
    recipe: Recipe
    val_metric: float
    val_drop: float
    plain_val_drop: float  # the chosen recipe with every layer quantized
    recipes: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] | None = None  # None: not needed (plain INT8 within max drop)
    kept_fp32: list[str] = field(default_factory=list)
    within_max_drop: bool = True
    failed: list[dict[str, Any]] = field(default_factory=list)  # recipes that could not quantize, and why

    @property
    def failed_labels(self) -> list[str]:
        """``entropy, per-channel`` for each recipe that failed."""
        return [Recipe(f["calibration"], f["per_channel"]).label for f in self.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration": self.recipe.calibration, "per_channel": self.recipe.per_channel,
            "val_metric": round(self.val_metric, 6), "val_drop": round(self.val_drop, 4),
            "plain_int8_val_drop": round(self.plain_val_drop, 4), "recipes": self.recipes,
            "sensitivity": self.sensitivity, "kept_fp32": self.kept_fp32, "within_max_drop": self.within_max_drop,
            "failed": self.failed,
        }


def weighted_nodes(onnx_path: str | Path) -> list[tuple[str, str]]:
    """(name, op type) of every node of WEIGHTED_OPS whose second input is an initializer, in graph
    order: the layers whose INT8 sensitivity is measured."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name for t in graph.initializer}
    return [(n.name, n.op_type) for n in graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits and n.name]


def tune_int8(
    fp32_path: str | Path, out_path: str | Path, make_reader: Callable[[], Any], val_metric: Callable[[Path], float],
    ref_val: float, direction: str, metric: str, max_drop: float, recipes: list[Recipe],
    fallback: bool = True, on_step: Callable[[str], None] | None = None,
) -> TuneResult:
    """Quantize ``fp32_path`` to ``out_path`` with the recipe and FP32 fallback described above.

    ``make_reader()`` gives a fresh calibration reader; ``val_metric(path)`` measures an ONNX file on
    the validation split; drops are against ``ref_val`` (the original model's validation metric).
    """
    step = on_step or (lambda _msg: None)
    out_path = Path(out_path)

    def drop(value: float) -> float:
        return metric_drop(ref_val, value, direction, metric)

    with tempfile.TemporaryDirectory(prefix="automl-int8-") as tmp:
        work = Path(tmp)
        prep = preprocess_for_quantization(fp32_path, work)
        caches = {m: work / f"calib-{m}.json" for m in CALIBRATIONS}

        def quantize(recipe: Recipe, path: Path, exclude: list[str] | None = None,
                     only: list[str] | None = None) -> float:
            quantize_static_int8(prep, path, make_reader(), None, per_channel=recipe.per_channel,
                                 calibration=recipe.calibration, nodes_to_exclude=exclude, nodes_to_quantize=only,
                                 cache=caches[recipe.calibration], preprocessed=True)
            return val_metric(path)

        # 1. the calibration recipe; one that fails (a calibrator ONNX Runtime cannot run on this graph
        # or data) is skipped and named, the others still compete
        tried: list[tuple[Recipe, float, Path]] = []
        failed: list[dict[str, Any]] = []
        last_error: ArtifactError | None = None
        for i, r in enumerate(recipes):
            step(f"calibrating INT8 ({r.label})")
            path = work / f"recipe{i}.onnx"
            try:
                tried.append((r, quantize(r, path), path))
            except ArtifactError as exc:
                last_error = exc
                failed.append({"calibration": r.calibration, "per_channel": r.per_channel, "error": str(exc)})
        if not tried:
            assert last_error is not None
            raise ArtifactError(f"every INT8 calibration recipe failed; the last: {last_error}") from last_error
        sign = 1.0 if direction == "maximize" else -1.0
        best_i = max(range(len(tried)), key=lambda i: (sign * tried[i][1], -i))
        recipe, best_val, best_path = tried[best_i]
        rows = [{"calibration": r.calibration, "per_channel": r.per_channel, "val_metric": round(v, 6),
                 "val_drop": round(drop(v), 4), "chosen": i == best_i} for i, (r, v, _) in enumerate(tried)]
        res = TuneResult(out_path, recipe, best_val, drop(best_val), drop(best_val), rows + failed, failed=failed)
        if res.val_drop <= max_drop or not fallback:
            res.within_max_drop = res.val_drop <= max_drop
            best_path.replace(out_path)
            return res

        # 2. per-layer sensitivity: each weighted node quantized alone
        layers = weighted_nodes(prep)
        sens = []
        for k, (name, op) in enumerate(layers):
            step(f"INT8 sensitivity {k + 1}/{len(layers)} ({name})")
            v = quantize(recipe, work / "one.onnx", only=[name])
            sens.append({"node": name, "op": op, "val_metric": round(v, 6), "val_drop": round(drop(v), 4)})
        order = sorted(range(len(sens)), key=lambda i: (-sens[i]["val_drop"], i))
        res.sensitivity = sens

        # 3. fall back to FP32, most sensitive first, until within max drop
        best = (res.val_drop, best_val, best_path, [])
        for n in range(1, len(order) + 1):
            keep = [sens[i]["node"] for i in order[:n]]
            step(f"INT8 with {n} layer(s) kept FP32")
            path = work / f"fallback{n}.onnx"
            v = quantize(recipe, path, exclude=keep)
            if drop(v) < best[0]:
                best = (drop(v), v, path, keep)
            if drop(v) <= max_drop:
                break
        res.val_drop, res.val_metric, path, res.kept_fp32 = best[0], best[1], best[2], best[3]
        res.within_max_drop = res.val_drop <= max_drop
        path.replace(out_path)
        return res
