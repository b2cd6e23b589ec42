"""best.pt -> variants (fp32, pruned, int8, fp16) -> measured on the test split -> gated -> report.

Every claim in the report is measured on this machine: accuracy with ONNX Runtime on the test split
recorded in best.pt, latency p50/p95 at batch 1 and 64 after a warm-up. A variant that loses more
than ``max_drop`` metric points is rejected; a quantized variant that is not faster than the FP32
ONNX model is marked "not faster". The recommended file is the fastest variant left (batch 64).
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automl.device import check_device_name, resolve_device
from automl.exceptions import ArtifactError, ConfigError
from compress.bench import BenchConfig
from compress.prune import check_prune_args
from compress.quantize import check_quantize_args
from compress.verdict import Variant, gate, metric_drop, recommend

REPORT_NAME = "compress_report.json"
REPORT_VERSION = 1
PARITY_ROWS = 256  # real test inputs used for the PyTorch-vs-ONNX parity check


@dataclass(frozen=True)
class CompressSettings:
    """Everything ``automl compress`` takes, checked once here (names match the CLI options)."""

    checkpoint: str
    out: str | None = None  # default: compressed/ beside the checkpoint
    prune_ratio: float = 0.3
    importance: str = "l1"
    finetune_epochs: int = 3
    quantize: str = "auto"
    calib_samples: int = 256
    max_drop: float = 1.0
    device: str = "auto"
    seed: int = 0
    warmup: int = 10
    repeats: int = 50
    threads: int = 0  # intra-op threads of PyTorch and ONNX Runtime for the run; 0 = their defaults
    parity_tol: float = 1e-4

    def __post_init__(self) -> None:
        check_prune_args(self.prune_ratio, self.importance)
        check_quantize_args(self.quantize, self.calib_samples)
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune epochs must be >= 0, got {self.finetune_epochs}")
        if not self.max_drop >= 0:
            raise ConfigError(f"max drop must be >= 0 accuracy points, got {self.max_drop}")
        check_device_name(self.device)
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = library default), got {self.threads}")
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"warmup must be >= 0 and repeats >= 1, got {self.warmup} and {self.repeats}")

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.checkpoint).parent / "compressed"


class CompressObserver:
    """Receives progress events; the CLI draws them with Rich. The default does nothing."""

    def on_stage(self, name: str) -> None:
        """A stage began (export, prune, fine-tune, quantize, measure …)."""

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        """Fine-tuning finished an epoch."""

    def on_note(self, message: str) -> None:
        """Something the user should know (a skipped step and why)."""


class _Timed(CompressObserver):
    """Forwards events to ``inner`` and records how long each stage took (seconds, for the report)."""

    def __init__(self, inner: CompressObserver) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = time.perf_counter()

    def on_stage(self, name: str) -> None:
        self.close()
        self._stage, self._t0 = name, time.perf_counter()
        self.inner.on_stage(name)

    def close(self) -> None:
        if self._stage is not None:
            self.seconds[self._stage] = round(self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._t0, 3)
        self._stage = None

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        self.inner.on_epoch(epoch, epochs, record)

    def on_note(self, message: str) -> None:
        self.inner.on_note(message)


@dataclass
class CompressResult:
    """The report: also written as compress_report.json."""

    report: dict[str, Any]
    report_path: str

    @property
    def recommended(self) -> str:
        return self.report["recommended"]

    def to_json(self) -> dict[str, Any]:
        return {**self.report, "report_path": self.report_path}


def load_inputs(checkpoint: str | Path) -> tuple[dict[str, Any], Any, Any, Any]:
    """(checkpoint dict, task, rebuilt model, data bundle); ArtifactError for anything unusable."""
    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.tasks import DataConfig, get_task

    path = Path(checkpoint)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip; say so before torch does
        raise ArtifactError(f"{path}: not a best.pt (not a PyTorch checkpoint file)")
    ckpt = load_checkpoint(path)
    try:
        task = get_task(str(ckpt["task"]))
    except ConfigError as exc:
        raise ArtifactError(f"{checkpoint}: {exc}") from None
    data = ckpt.get("data")
    if not isinstance(data, dict) or "source" not in data:
        raise ArtifactError(f"{checkpoint}: checkpoint records no training data ('data'); "
                            "compress needs it to fine-tune, calibrate and measure")
    try:
        cfg = DataConfig(**data)
    except TypeError as exc:
        raise ArtifactError(f"{checkpoint}: unreadable 'data' entry ({exc})") from None
    model = model_from_checkpoint(ckpt, str(checkpoint))
    bundle = task.load_data(cfg)
    if not len(bundle.y_test):
        raise ArtifactError(f"{checkpoint}: the recorded data has an empty test split; nothing to measure on")
    return ckpt, task, model, bundle


def run_compress(settings: CompressSettings, observer: CompressObserver | None = None) -> CompressResult:
    """The whole of ``automl compress``: see the module docstring. Writes into ``settings.out_dir()``.

    ``settings.threads`` > 0 caps PyTorch's intra-op threads for the run (restored afterwards) and
    ONNX Runtime's for every session it opens: on a shared machine fewer threads run much faster.
    """
    import torch

    before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _run(settings, observer)
    finally:
        torch.set_num_threads(before)


def _run(settings: CompressSettings, observer: CompressObserver | None) -> CompressResult:
    from automl.artifacts import atomic_write_json
    from automl.onnx_meta import metadata_from_checkpoint
    from automl.train import evaluate
    from compress import bench
    from compress.export import default_providers, export_checked

    obs = _Timed(observer or CompressObserver())
    start = time.perf_counter()
    obs.on_stage("loading checkpoint and data")
    ckpt, task, model, bundle = load_inputs(settings.checkpoint)
    device = str(resolve_device(settings.device))
    out = settings.out_dir().resolve()  # absolute paths in the report, wherever it is read from
    out.mkdir(parents=True, exist_ok=True)
    src = str(settings.checkpoint)
    metric, direction = task.metric, task.direction
    metric_fn, loss_fn = task.metric_fn(), task.loss_fn(0.0)
    example = task.example_input(bundle.meta, 1)
    x_check = bundle.x_test[:PARITY_ROWS]
    _, ref_metric = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        obs.on_note(msg)

    obs.on_stage("exporting FP32 ONNX")
    variants: list[Variant] = []
    nets: dict[str, Any] = {"fp32": model}
    fp32 = export_checked(model, example, out / "model.onnx", metadata_from_checkpoint(ckpt, "fp32", src), x_check,
                          settings.parity_tol)
    variants.append(Variant("fp32", "fp32", "fp32", fp32["path"], parity_max_abs_diff=fp32["parity_max_abs_diff"]))

    prune_info, pruned_pt = _prune_stage(settings, ckpt, task, model, bundle, example, device, out, obs)
    if prune_info.get("skipped"):
        note(f"pruning skipped: {prune_info['skipped']}")
    if pruned_pt is not None:
        from automl.artifacts import load_checkpoint, model_from_checkpoint

        pruned_ckpt = load_checkpoint(pruned_pt)
        nets["pruned"] = model_from_checkpoint(pruned_ckpt, str(pruned_pt))
        obs.on_stage("exporting pruned ONNX")
        exp = export_checked(nets["pruned"], example, out / "model.pruned.onnx",
                             metadata_from_checkpoint(pruned_ckpt, "pruned", str(pruned_pt)), x_check,
                             settings.parity_tol)
        variants.append(Variant("pruned", "fp32", "pruned", exp["path"],
                                parity_max_abs_diff=exp["parity_max_abs_diff"]))

    cfg = BenchConfig(warmup=settings.warmup, repeats=settings.repeats, threads=settings.threads)
    providers = default_providers()
    sessions: dict[str, Any] = {}
    for v in variants:
        obs.on_stage(f"measuring {v.name} accuracy")
        sessions[v.name] = _measure_accuracy(v, bundle, metric_fn, providers, cfg.threads)
    quant_info = _quantize_stage(settings, ckpt, src, nets, variants, bundle, example, out, ref_metric, direction,
                                 metric, obs, note)
    for v in variants:
        if v.name not in sessions:
            obs.on_stage(f"measuring {v.name} accuracy")
            sessions[v.name] = _measure_accuracy(v, bundle, metric_fn, providers, cfg.threads)
    obs.on_stage(f"measuring latency of {len(variants)} variants and PyTorch eager")
    torch_ms = _measure_latency(variants, sessions, model, bundle.x_test, cfg, device)
    gate(variants, ref_metric, direction, metric, settings.max_drop, settings.parity_tol, torch_ms)
    best = recommend(variants)
    report = {
        "format_version": REPORT_VERSION,
        "checkpoint": str(Path(src).resolve()),
        "out": str(out),
        "task": task.name,
        "metric": metric,
        "direction": direction,
        "settings": asdict(settings),
        "hardware": bench.hardware(),
        "provider": providers[0],
        "baseline": {"variant": "pytorch-eager", metric: ref_metric, "metric_value": ref_metric, "device": device,
                     "latency_ms": torch_ms, "arch": ckpt["arch"]},
        "prune": {**prune_info, "path": str(pruned_pt) if pruned_pt else None},
        "quantization": quant_info,
        "variants": [v.to_json(metric) for v in variants],
        "recommended": best.path,
        "recommended_variant": best.name,
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 2),
        "stage_seconds": obs.seconds,
    }
    obs.on_stage("writing report")
    report_path = out / REPORT_NAME
    atomic_write_json(report_path, report)
    obs.close()
    return CompressResult(report, str(report_path))


def _prune_stage(
    settings: CompressSettings, ckpt: dict[str, Any], task: Any, model: Any, bundle: Any, example: Any,
    device: str, out: Path, obs: CompressObserver,
) -> tuple[dict[str, Any], Path | None]:
    """Prune, fine-tune and save pruned.pt; returns (the prune section of the report, its path or None)."""
    from automl.artifacts import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
    from automl.train import evaluate
    from compress.prune import finetune, prune_model

    obs.on_stage("pruning channels")
    taylor = (bundle.x_train, bundle.y_train, task.loss_fn(0.0)) if settings.importance == "taylor" else None
    outcome = prune_model(model, ckpt["arch"], example, settings.prune_ratio, settings.importance, taylor)
    if outcome.model is None:
        return outcome.to_json(), None
    pruned = outcome.model
    loss_fn, metric_fn = task.loss_fn(0.0), task.metric_fn()
    _, before_ft = evaluate(pruned, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    if settings.finetune_epochs:
        obs.on_stage(f"fine-tuning pruned model ({settings.finetune_epochs} epochs)")
        epochs = settings.finetune_epochs
        outcome.finetune = finetune(
            pruned, task, bundle, dict(ckpt.get("params") or {}), epochs, device, settings.seed,
            on_epoch=lambda e, rec: obs.on_epoch(e, epochs, rec),
        )
    pruned = pruned.cpu().eval()
    val_loss, val_metric = evaluate(pruned, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    test_loss, test_metric = evaluate(pruned, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    outcome.finetune[f"test_{task.metric}_before"] = before_ft
    m = task.metric
    metrics = {"metric": m, f"val_{m}": val_metric, "val_loss": val_loss, f"test_{m}": test_metric,
               "test_loss": test_loss, "sizes": bundle.sizes()}
    info = outcome.to_json()
    new = make_checkpoint(
        task=task.name, arch=outcome.arch, model=pruned, preprocess=ckpt["preprocess"], data=ckpt["data"],
        metrics=metrics, params=ckpt.get("params") or {}, study=ckpt.get("study"), trial=ckpt.get("trial"),
        extra={"pruned_from": str(settings.checkpoint), "prune": info},
    )
    path = save_checkpoint(out / "pruned.pt", new)
    model_from_checkpoint(load_checkpoint(path), str(path))  # must load back with weights_only and rebuild
    return info, path


def _quantize_stage(
    settings: CompressSettings, ckpt: dict[str, Any], src: str, nets: dict[str, Any], variants: list[Variant],
    bundle: Any, example: Any, out: Path, ref_metric: float, direction: str, metric: str,
    obs: CompressObserver, note: Any,
) -> dict[str, Any]:
    """Make the INT8 / FP16 variants of each network worth quantizing; returns the report section."""
    from automl.onnx_meta import metadata_from_checkpoint
    from compress.export import _gpu_present
    from compress.quantize import (
        calibration_reader,
        convert_fp16,
        cpu_has_vnni,
        int8_method,
        mac_shares,
        quantize_dynamic_int8,
        quantize_static_int8,
    )

    mode = settings.quantize
    info: dict[str, Any] = {"mode": mode}
    if mode == "none":
        return info
    gpu = _gpu_present()
    want_int8 = mode in ("auto", "int8")
    want_fp16 = mode == "fp16" or (mode == "auto" and gpu)
    if mode == "auto" and not gpu:
        note("fp16 skipped: no GPU here (FP16 pays off on the CUDA execution provider; ask with --quantize fp16)")
    shares = mac_shares(nets["fp32"], example)
    method, why = int8_method(shares)
    info.update({"mac_shares": {k: round(v, 4) for k, v in shares.items()}, "int8_method": method,
                 "int8_why": why, "reduce_range": not cpu_has_vnni()})
    for base in [v for v in list(variants) if v.kind == "fp32"]:
        if base.name == "pruned" and base.metric_value is not None and \
                metric_drop(ref_metric, base.metric_value, direction, metric) > settings.max_drop:
            note("pruned model loses too much accuracy: its INT8/FP16 variants were not made")
            continue
        prefix = "model" if base.name == "fp32" else "model.pruned"
        name = "" if base.name == "fp32" else "pruned-"
        meta_src = src if base.name == "fp32" else str(out / "pruned.pt")
        if want_int8:
            target = out / f"{prefix}.int8.onnx"
            kind = "int8" if method == "static" else "int8-dynamic"
            obs.on_stage(f"quantizing {name}int8 ({method})")
            meta = metadata_from_checkpoint(ckpt, kind, meta_src)
            if method == "static":
                reader = calibration_reader(bundle.x_train, settings.calib_samples, seed=settings.seed)
                quantize_static_int8(base.path, target, reader, meta)
                info["calib_samples"] = int(len(reader.index))
                info["calib_batches"] = int(reader.batches)
            else:
                quantize_dynamic_int8(base.path, target, meta)
            variants.append(Variant(f"{name}int8", kind, base.name, str(target)))
        if want_fp16:
            target = out / f"{prefix}.fp16.onnx"
            obs.on_stage(f"converting {name}fp16")
            convert_fp16(base.path, target, metadata_from_checkpoint(ckpt, "fp16", meta_src))
            variants.append(Variant(f"{name}fp16", "fp16", base.name, str(target)))
    return info


def _measure_accuracy(v: Variant, bundle: Any, metric_fn: Any, providers: list[str], threads: int = 0) -> Any:
    """Fill size and test metric of ``v``; returns its ONNX Runtime session (on the first provider)."""
    from compress import bench
    from compress.export import session

    sess = session(v.path, providers, threads)
    v.provider = sess.get_providers()[0]
    v.size_bytes = bench.file_size(v.path)
    v.metric_value = bench.ort_metric(sess, bundle.x_test, bundle.y_test, metric_fn)
    return sess


def _measure_latency(variants: list[Variant], sessions: dict[str, Any], model: Any, x: Any, cfg: BenchConfig,
                     device: str) -> dict[str, Any]:
    """Latency of every variant and of PyTorch eager, timed interleaved; returns PyTorch's. On a GPU
    each variant is also timed on the CPU provider."""
    import torch

    from compress import bench
    from compress.export import session

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
        cpu = bench.latencies({v.name: bench.ort_runner(session(v.path, ["CPUExecutionProvider"], cfg.threads), x)
                               for v in on_gpu}, cfg)
        for v in on_gpu:
            v.other_latency_ms = {"CPUExecutionProvider": cpu[v.name]}
    model.cpu()
    return lat["pytorch"]
