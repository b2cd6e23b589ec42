"""ONNX Runtime quantization: static INT8 (QDQ, per-channel, calibrated), dynamic INT8, and FP16.

Static INT8 suits convolution-heavy models (activations are quantized with ranges measured on
calibration data); dynamic INT8 suits models dominated by Linear or recurrent layers (weights are
quantized offline, activations per batch at run time); FP16 halves the file and pays off on GPUs.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

from automl.exceptions import ArtifactError, ConfigError

# The INT8 method rule and its helpers live in automl.runtime.int8 (``automl search --score int8`` quantizes
# trials the way compress does); re-exported here under their old names.
from automl.runtime.int8 import (  # noqa: F401  (the reader and pre-processing live in automl, which --score shares)
    CALIB_BATCH,
    DYNAMIC_OPS,
    calibration_reader,
    cpu_has_vnni,
    int8_method,
    mac_shares,
    quant_preprocess,
)

QUANTIZE_MODES = ("auto", "int8", "fp16", "none")


def check_quantize_args(mode: str, calib_samples: int) -> None:
    """ConfigError naming the argument and its allowed values."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantize mode {mode!r} (choose from: {', '.join(QUANTIZE_MODES)})")
    if calib_samples <= 0:
        raise ConfigError(f"calibration samples must be > 0, got {calib_samples}")


CPU_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features() -> dict[str, bool] | None:
    """Which of CPU_FEATURES the CPU has (the instruction sets that decide what INT8 gains: VNNI
    int8 dot products, AVX-512 width); None where /proc/cpuinfo cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {f: f in flags for f in CPU_FEATURES}


def finish_onnx(path: str | Path, meta: dict[str, str]) -> Path:
    """Attach automl's metadata ``meta`` to the ONNX file at ``path``, check it with ``onnx.checker``
    and save it in place (a quantized or converted file is written without them)."""
    import onnx

    from automl.runtime.onnx_meta import set_metadata

    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


CALIBRATIONS = ("minmax", "entropy", "percentile")  # ONNX Runtime's CalibrationMethod, by our name


def calibration_method(name: str) -> Any:
    """ONNX Runtime's CalibrationMethod for one of CALIBRATIONS."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def preprocess_for_quantization(fp32_path: str | Path, tmp: str | Path) -> Path:
    """The graph the quantizer works on (ONNX Runtime's pre-processing, or the plain graph); node
    names given to ``nodes_to_exclude`` must be this graph's."""
    return quant_preprocess(fp32_path, Path(tmp))


def quantize_static_int8(
    fp32_path: str | Path, out_path: str | Path, reader: Any, meta: dict[str, str] | None, per_channel: bool = True,
    reduce_range: bool | None = None, calibration: str = "minmax", nodes_to_exclude: list[str] | None = None,
    nodes_to_quantize: list[str] | None = None, cache: str | Path | None = None, preprocessed: bool = False,
) -> Path:
    """Static INT8 in QDQ format: int8 weights (per channel or per tensor), uint8 activations whose
    ranges come from the calibration ``reader`` (``calibration``: minmax | entropy | percentile).

    ``nodes_to_exclude`` stay FP32; ``nodes_to_quantize`` (when given) are the only nodes quantized.
    ``cache``: a JSON file of calibrated ranges, written on the first call and read on later ones
    (the ranges depend on the graph and the method only, so one calibration serves many recipes).
    ``preprocessed``: ``fp32_path`` is already the output of ``preprocess_for_quantization``.
    ``meta`` None: no metadata and no checker (an intermediate candidate, measured and thrown away).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if calibration not in CALIBRATIONS:
        raise ConfigError(f"unknown calibration {calibration!r} (choose from: {', '.join(CALIBRATIONS)})")
    out_path = Path(out_path)
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = Path(fp32_path) if preprocessed else quant_preprocess(fp32_path, Path(tmp))
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the Entropy calibrator prints; --json owns stdout
                quantize_static(
                    str(prep), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=calibration_method(calibration), nodes_to_exclude=nodes_to_exclude or None,
                    nodes_to_quantize=nodes_to_quantize or None,
                    calibration_cache_path=str(cache) if cache else None,
                    # No CalibMaxIntermediateOutputs: in onnxruntime 1.31 it drops the collected ranges
                    # instead of merging them. MinMax keeps only per-batch min/max tensors, so memory stays
                    # small anyway; the reader hands over one small batch at a time.
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
        except Exception as exc:
            raise ArtifactError(f"static INT8 quantization failed ({str(exc).splitlines()[0][:160]})") from exc
    return finish_onnx(out_path, meta) if meta is not None else out_path


def quantize_dynamic_int8(fp32_path: str | Path, out_path: str | Path, meta: dict[str, str]) -> Path:
    """Dynamic INT8: int8 per-channel weights of MatMul/Gemm/recurrent ops, activations quantized
    per batch at run time (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = quant_preprocess(fp32_path, Path(tmp))
        try:
            quantize_dynamic(str(prep), str(out_path), op_types_to_quantize=DYNAMIC_OPS, per_channel=True,
                             reduce_range=not cpu_has_vnni(), weight_type=QuantType.QInt8)
        except Exception as exc:
            raise ArtifactError(f"dynamic INT8 quantization failed ({str(exc).splitlines()[0][:160]})") from exc
    return finish_onnx(out_path, meta)


def convert_fp16(fp32_path: str | Path, out_path: str | Path, meta: dict[str, str]) -> Path:
    """FP16 weights and compute, float32 inputs and outputs kept (so callers feed the same arrays)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_path = Path(out_path)
    proto = onnx.load(str(fp32_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            half = convert_float_to_float16(proto, keep_io_types=True)
        except Exception as exc:
            raise ArtifactError(f"FP16 conversion failed ({str(exc).splitlines()[0][:160]})") from exc
    toposort(half.graph)  # the converter appends the input Casts at the end of the node list
    onnx.save(half, str(out_path))
    return finish_onnx(out_path, meta)


def toposort(graph: Any) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # a cycle or a missing producer: leave the rest as they were
            ordered += rest
            break
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
