"""Compression-aware scoring (``automl search --score int8 | fp16``): a trained trial is also
quantized the way ``automl compress`` quantizes a best.pt, and judged by what the quantized model
scores on the validation split with ONNX Runtime.

INT8 follows ``compress``'s choice of method (``int8_method``, which ``compress.quantize`` takes from
here, since ``automl`` never imports ``compress``): static INT8 (QDQ, int8 per-channel weights, uint8 activations,
MinMax ranges calibrated on ``CALIB_SAMPLES`` training rows) when convolutions hold at least half of
the multiply-accumulates, dynamic INT8 of MatMul / Gemm / LSTM / embedding weights otherwise. It is
the first recipe ``compress``'s INT8 tuner tries, without the tuning (a search scores many networks).
FP16 (GPU only) converts weights and compute, float32 inputs and outputs kept.

Latency: with a budget or a latency objective the figure that counts is the quantized graph's, timed
on the study's target; it is cached in the study like an FP32 timing, under a key that includes the
score mode.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from automl.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import numpy as np
    import optuna
    import torch
    from onnxruntime.quantization import CalibrationDataReader

    from automl.models import Arch
    from automl.runtime.latency import LatencyTarget, Measurement

    #: a task's metric: (logits, targets) -> a number
    MetricFn = Callable[[torch.Tensor, torch.Tensor], float]

SCORE_MODES = ("none", "int8", "fp16")
CALIB_SAMPLES = 256  # training rows the static INT8 ranges are calibrated on (compress's default too)
#: ONNX ops that dynamic quantization converts: weights of MatMul (Linear layers, after pre-processing
#: turns Gemm into MatMul), LSTM and attention, and embedding tables (Gather on an initializer).
#: Convolutions stay float (ConvInteger is slow on CPU); ONNX Runtime has no INT8 GRU kernel.
DYNAMIC_OPS = ["MatMul", "Gemm", "LSTM", "Attention", "Gather"]
EVAL_BATCH = 256
CALIB_BATCH = 32  # samples per calibration batch: bounds the memory the calibrator's activations take


def check_score(mode: str, gpu: bool | None = None) -> None:
    """ConfigError for an unknown ``--score`` or ``fp16`` without a GPU (``gpu`` None: probe)."""
    if mode not in SCORE_MODES:
        raise ConfigError(f"unknown --score {mode!r} (choose from: {', '.join(SCORE_MODES)})")
    if mode == "fp16":
        if gpu is None:
            from automl.runtime.ort import gpu_present

            gpu = gpu_present()
        if not gpu:
            raise ConfigError("--score fp16 needs a GPU (FP16 pays off on ONNX Runtime's CUDA provider; "
                              "on this CPU use --score int8)")


def cpu_has_vnni() -> bool:
    """Whether the CPU has VNNI int8 dot products (without them u8s8 products can saturate, so
    weights use 7 bits: ``reduce_range``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: trust the default
    return any(flag in text for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def mac_shares(model: torch.nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Share of multiply-accumulates spent in conv, linear and recurrent layers, from Torch-Pruning's
    per-layer op counter (one forward pass on ``example``)."""
    import torch_pruning as tp
    from torch import nn

    kinds = {"conv": nn.modules.conv._ConvNd, "linear": nn.Linear, "recurrent": nn.RNNBase}
    _, _, layer_ops, _ = tp.utils.count_ops_and_params(model.eval(), example, layer_wise=True)
    macs = dict.fromkeys(kinds, 0.0)
    for module, ops in layer_ops.items():
        for kind, cls in kinds.items():
            if isinstance(module, cls):
                macs[kind] += float(ops or 0)
    total = sum(macs.values()) or 1.0
    return {k: v / total for k, v in macs.items()}


def int8_method(shares: dict[str, float]) -> tuple[str, str]:
    """('static' | 'dynamic', why) for a model with these MAC shares (``compress`` and ``--score``)."""
    if shares.get("recurrent", 0) > 0:
        return "dynamic", "recurrent layers: dynamic INT8 of Linear, LSTM and embedding weights (no static RNN kernels)"
    if shares.get("conv", 0) >= 0.5:
        return "static", f"{shares['conv']:.0%} of MACs in convolutions: static INT8 (QDQ, calibrated)"
    return "dynamic", f"{shares.get('linear', 0):.0%} of MACs in Linear layers: dynamic INT8"


def method_for(model: torch.nn.Module, example: torch.Tensor) -> str:
    """``static`` | ``dynamic``: ``int8_method`` of ``model`` (left untouched: a CPU copy is counted)."""
    import copy

    return int8_method(mac_shares(copy.deepcopy(model).cpu(), example[:1].cpu()))[0]


def _reader_base() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


def calib_plan(available: int, samples: int, batch: int = CALIB_BATCH) -> tuple[int, int]:
    """(rows used, rows per batch) to calibrate on ``samples`` of ``available`` rows in equal batches
    of at most ``batch``: ONNX Runtime's histogram calibrators (entropy, percentile) stack the
    batches into one array, so a ragged last batch fails them. Fewer than one batch per batch count
    of rows is left out (154 rows, batch 32: 5 batches of 30)."""
    n = max(0, min(samples, available))
    if n == 0:
        return 0, max(1, batch)
    n_batches = -(-n // max(1, batch))  # ceil
    per = n // n_batches
    return per * n_batches, per


def calibration_reader(x: torch.Tensor | np.ndarray, samples: int, batch: int = CALIB_BATCH,
                       seed: int = 0) -> CalibrationDataReader:
    """A CalibrationDataReader over up to ``samples`` rows of ``x`` chosen at random (seeded), handed to
    ONNX Runtime in equal batches of at most ``batch`` rows (``calib_plan``); each batch is converted
    (to a CPU array) only when it is asked for. ``requested`` / ``available`` say what was asked and what existed."""
    import numpy as np

    class StreamingReader(_reader_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            rng = np.random.default_rng(seed)
            n = len(x)
            used, per = calib_plan(n, samples, batch)
            self.requested, self.available = samples, n
            self.index = np.sort(rng.permutation(n)[:used])
            self.batch = per
            self.batches = 0
            self._it: Iterator[np.ndarray] | None = None

        def _gen(self) -> Iterator[np.ndarray]:
            for i in range(0, len(self.index), self.batch):
                rows = x[self.index[i : i + self.batch]]
                arr = rows.detach().cpu().numpy() if hasattr(rows, "detach") else np.asarray(rows)
                self.batches += 1
                yield np.ascontiguousarray(arr)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._it is None:
                self._it = self._gen()
            arr = next(self._it, None)
            return None if arr is None else {"input": arr}

        def rewind(self) -> None:
            self._it = None

    return StreamingReader()


def quant_preprocess(fp32_path: str | Path, tmp: Path) -> Path:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimisation) into ``tmp``;
    the plain graph when it fails, since it only helps the quantizer."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prep = tmp / "prep.onnx"
    try:
        quant_pre_process(str(fp32_path), str(prep), skip_symbolic_shape=False)
    except Exception:
        return Path(fp32_path)
    return prep



def quantize_bytes(fp32: bytes, mode: str, method: str, x_calib: torch.Tensor | np.ndarray, seed: int = 0) -> bytes:
    """The ``mode`` (int8 | fp16) graph of the FP32 ONNX ``fp32``; ``method`` static | dynamic (INT8).
    ConfigError-free: a quantizer failure raises RuntimeError with its first line."""
    import onnx

    if mode == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(onnx.load_from_string(fp32), keep_io_types=True)
        return half.SerializeToString()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        prep = quant_preprocess(src, Path(tmp))
        try:
            if method == "static":
                quantize_static(
                    str(prep), str(out), calibration_reader(x_calib, CALIB_SAMPLES, seed=seed),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=not cpu_has_vnni(), activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
            else:
                quantize_dynamic(str(prep), str(out), op_types_to_quantize=DYNAMIC_OPS, per_channel=True,
                                 reduce_range=not cpu_has_vnni(), weight_type=QuantType.QInt8)
        except Exception as exc:
            raise RuntimeError(f"{mode} quantization failed ({str(exc).splitlines()[0][:160]})") from exc
        return out.read_bytes()


def providers(mode: str) -> list[str]:
    from automl.runtime.ort import CPU, CUDA

    return [CUDA, CPU] if mode == "fp16" else [CPU]


def ort_metric(blob: bytes, x: torch.Tensor, y: torch.Tensor, metric_fn: MetricFn, mode: str) -> float:
    """The task metric of the ONNX model ``blob`` on (``x``, ``y``), run by ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(blob, sess_options=opts, providers=providers(mode))
    arr = x.detach().cpu().numpy()
    outs = [sess.run(["logits"], {"input": np.ascontiguousarray(arr[i:i + EVAL_BATCH])})[0]
            for i in range(0, len(arr), EVAL_BATCH)]
    logits = torch.from_numpy(np.concatenate(outs).astype(np.float32))
    return float(metric_fn(logits, y.detach().cpu()))


def quantized(model: torch.nn.Module, example: torch.Tensor, mode: str, x_calib: torch.Tensor | np.ndarray,
              seed: int = 0) -> bytes:
    """``model`` (left untouched) exported to ONNX and quantized (``mode``: int8 | fp16)."""
    from automl.runtime.export import export_bytes

    method = method_for(model, example) if mode == "int8" else "fp16"
    return quantize_bytes(export_bytes(model, example[:1]), mode, method, x_calib, seed)


def measure_cached(study: optuna.Study | None, arch: Arch, model: torch.nn.Module, example: torch.Tensor,
                   target: LatencyTarget, mode: str, x_calib: torch.Tensor | np.ndarray,
                   ) -> tuple[Measurement, Measurement, bool]:
    """(FP32 measurement, quantized measurement, whether the quantized one came from the study's
    cache): the quantized graph timed on ``target`` (its ONNX bytes, the network's params and MACs)."""
    from automl.runtime.latency import Measurement, cache_key, cached, remember, time_onnx
    from automl.runtime.latency import measure_cached as measure_fp32

    fp32, _ = measure_fp32(study, arch, model, example, target)
    key = cache_key({**arch, "__score__": mode}, tuple(example.shape[1:]), target)
    hit = cached(study, key) if study is not None else None
    if hit is not None:
        return fp32, hit, True
    blob = quantized(model, example, mode, x_calib)
    latency, spread, runs = time_onnx(blob, example, target)
    m = Measurement(latency_ms=latency, spread_ms=spread, runs=runs, onnx_bytes=len(blob),
                    params=fp32.params, macs=fp32.macs)
    if study is not None:
        remember(study, key, m)
    return fp32, m, False


#: trial user attributes of a scored trial, as ``automl trials`` shows them
SCORE_ATTRS = ("score", "val_fp32", "val_int8", "val_fp16", "latency_ms_fp32", "latency_ms_int8",
               "latency_ms_fp16", "onnx_bytes_fp32", "onnx_bytes_int8", "onnx_bytes_fp16", "score_note")
#: a scored trial's ``SCORE_ATTRS`` that it recorded: the mode (str), figures (float / int), the note (str)
ScoreAttrs = dict[str, str | float | int]


class ScoreSummary(TypedDict):
    """``--score`` in a search's result (``score_summary``)."""

    mode: str
    n_scored: int
    n_complete: int
    best_trial: int | None
    best: ScoreAttrs | None


def trial_score(attrs: Mapping[str, object]) -> ScoreAttrs | None:
    """What a trial recorded of its compression-aware score (None: not scored)."""
    if "score" not in attrs:
        return None
    return {k: attrs[k] for k in SCORE_ATTRS if k in attrs}


def score_summary(study: optuna.Study, mode: str, best_trial: int | None) -> ScoreSummary:
    """``--score`` in a search's result: the mode, how many completed trials were quantized, and the
    best trial's FP32 and quantized figures."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = next((t for t in done if t.number == best_trial), None)
    return {"mode": mode, "n_scored": sum(f"val_{mode}" in t.user_attrs for t in done), "n_complete": len(done),
            "best_trial": best_trial, "best": trial_score(best.user_attrs) if best is not None else None}


def score_note(summary: ScoreSummary) -> str:
    """One line for the search summary."""
    mode, best = summary["mode"], summary.get("best") or {}
    line = (f"--score {mode}: {summary['n_scored']} of {summary['n_complete']} completed trials judged by their "
            f"{mode.upper()} model's validation metric (ONNX Runtime)")
    if f"val_{mode}" in best:
        line += f"; best trial {summary['best_trial']}: {best[f'val_{mode}']:.4f} {mode.upper()}, " \
                f"{best['val_fp32']:.4f} FP32"
    elif "score_note" in best:
        line += f"; best trial {summary['best_trial']}: {best['score_note']}"
    return line


def score_label(score: ScoreAttrs | None) -> str | None:
    """``int8; fp32 0.9556`` beside a scored trial's value in ``automl trials`` (None: nothing to add)."""
    if not score:
        return None
    mode = score.get("score")
    if "val_fp32" in score and f"val_{mode}" in score:
        return f"{mode}; fp32 {score['val_fp32']:.4f}"
    return "fp32: not quantized" if "score_note" in score else None
