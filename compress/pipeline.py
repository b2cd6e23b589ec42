"""best.pt -> variants (fp32, pruned, int8, fp16) -> measured on the test split -> gated -> report.

Every claim in the report is measured on this machine: accuracy with ONNX Runtime on the test split
recorded in best.pt, latency p50/p95 at batch 1 and 64 after a warm-up. A variant that loses more
than ``max_drop`` metric points is rejected; a quantized variant that is not faster than the FP32
ONNX model is marked "not faster". The recommended file is the fastest variant left (batch 64).
"""

from __future__ import annotations

import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automl.device import check_device_name, resolve_device
from automl.exceptions import ArtifactError, ConfigError
from compress.bench import BenchConfig
from compress.checks import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, check_checkpoint_file, check_distill_args
from compress.int8tune import CALIBRATION_CHOICES
from compress.prune import check_prune_args
from compress.quantize import check_quantize_args
from compress.stages import budget_stage, measure_accuracy, measure_latency, prune_stage, quantize_stage
from compress.verdict import Variant, gate, recommend

REPORT_NAME = "compress_report.json"
STABLE_NAME = "best.onnx"  # a copy of the recommended variant, the file the README serves
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
    distill: bool = False  # fine-tune the pruned model by distillation from the unpruned one (classification)
    distill_temperature: float = DEFAULT_TEMPERATURE
    distill_weight: float = DEFAULT_WEIGHT  # share of the soft-target (KL) term in the loss
    quantize: str = "auto"
    calib_samples: int = 256
    calibration: str = "auto"  # auto (chosen on validation) | minmax | entropy | percentile
    fallback: bool = True  # keep the most INT8-sensitive layers FP32 until within max_drop
    max_drop: float = 1.0
    device: str = "auto"
    seed: int = 0
    warmup: int = 10
    repeats: int = 50
    threads: int = 0  # intra-op threads of PyTorch and ONNX Runtime for the run; 0 = their defaults
    parity_tol: float = 1e-4

    def __post_init__(self) -> None:
        check_prune_args(self.prune_ratio, self.importance)
        check_distill_args(self.distill_temperature, self.distill_weight)
        check_quantize_args(self.quantize, self.calib_samples)
        if self.calibration not in CALIBRATION_CHOICES:
            raise ConfigError(f"unknown calibration {self.calibration!r} "
                              f"(choose from: {', '.join(CALIBRATION_CHOICES)})")
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
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task

    path = Path(checkpoint)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip; say so before torch does
        raise ArtifactError(f"{path}: not a best.pt (not a PyTorch checkpoint file)")
    ckpt = load_checkpoint(path)
    try:
        task = get_task(str(ckpt["task"]))
    except ConfigError as exc:
        raise ArtifactError(f"{checkpoint}: {exc}") from exc
    data = ckpt.get("data")
    if not isinstance(data, dict) or "source" not in data:
        raise ArtifactError(f"{checkpoint}: checkpoint records no training data ('data'); "
                            "compress needs it to fine-tune, calibrate and measure")
    try:
        cfg = DataConfig(**data)
    except TypeError as exc:
        raise ArtifactError(f"{checkpoint}: unreadable 'data' entry ({exc})") from exc
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
    check_checkpoint_file(settings.checkpoint)  # before the seconds of importing PyTorch
    import torch

    before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _run(settings, observer)
    finally:
        torch.set_num_threads(before)


def _run(settings: CompressSettings, observer: CompressObserver | None) -> CompressResult:
    from automl.artifacts import StagedDir, atomic_write_json

    obs = _Timed(observer or CompressObserver())
    start = time.perf_counter()
    obs.on_stage("loading checkpoint and data")
    ckpt, task, model, bundle = load_inputs(settings.checkpoint)
    device = str(resolve_device(settings.device))
    out = settings.out_dir().resolve()  # absolute paths in the report, wherever it is read from
    # Every file is written into a hidden folder beside ``out`` and the set replaces the previous
    # run's only at the end: a kill never leaves new files beside old ones, nor ungated ones.
    with StagedDir(out, owned=is_compress_output) as staged:
        report = _variants_and_report(settings, obs, ckpt, task, model, bundle, device, staged.work, out)
        report["seconds"] = round(time.perf_counter() - start, 2)
        obs.on_stage("writing report")
        report["stage_seconds"] = obs.seconds
        atomic_write_json(staged.work / REPORT_NAME, report)
        staged.commit(last=REPORT_NAME)
    obs.close()
    return CompressResult(report, str(out / REPORT_NAME))


def is_compress_output(name: str) -> bool:
    """Whether a file name in the output folder is one compress writes (replaced by the next run)."""
    return name in (REPORT_NAME, "pruned.pt", STABLE_NAME) or (name.startswith("model.") and ".onnx" in name)


def _variants_and_report(
    settings: CompressSettings, obs: _Timed, ckpt: dict[str, Any], task: Any, model: Any, bundle: Any,
    device: str, work: Path, out: Path,
) -> dict[str, Any]:
    """Make, measure and gate every variant, writing files into ``work``; the report names them by
    their place in ``out``, where they go when the run is complete."""
    from automl.models import family_of
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from automl.train import evaluate
    from compress import bench
    from compress.export import default_providers, export_checked

    src = str(settings.checkpoint)
    metric, direction = task.metric, task.direction
    metric_fn, loss_fn = task.metric_fn(), task.loss_fn(0.0)
    example = task.example_input(bundle.meta, 1)
    x_check = bundle.x_test[:PARITY_ROWS]
    _, ref_metric = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    _, ref_val = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        obs.on_note(msg)

    obs.on_stage("exporting FP32 ONNX")
    variants: list[Variant] = []
    nets: dict[str, Any] = {"fp32": model}
    fp32 = export_checked(model, example, work / "model.onnx", metadata_from_checkpoint(ckpt, "fp32", src), x_check,
                          settings.parity_tol)
    variants.append(Variant("fp32", "fp32", "fp32", fp32["path"], parity_max_abs_diff=fp32["parity_max_abs_diff"]))

    prune_info, pruned_pt = prune_stage(settings, ckpt, task, model, bundle, example, device, work, obs)
    prune_skip = prune_info.get("skipped")
    quant_skip = family_of(ckpt["arch"]).quantize_unsupported if settings.quantize != "none" else None
    if prune_skip and quant_skip:  # one line for a model neither applies to (a tree ensemble)
        note(f"pruning and quantization skipped: {prune_skip}, and {quant_skip}; "
             f"the FP32 ONNX model is exported and measured")
    elif prune_skip:
        note(f"pruning skipped: {prune_skip}")
    elif quant_skip:
        note(f"quantization skipped: {quant_skip}")
    if pruned_pt is not None:
        from automl.artifacts import load_checkpoint, model_from_checkpoint

        pruned_ckpt = load_checkpoint(pruned_pt)
        nets["pruned"] = model_from_checkpoint(pruned_ckpt, str(pruned_pt))
        obs.on_stage("exporting pruned ONNX")
        exp = export_checked(nets["pruned"], example, work / "model.pruned.onnx",
                             metadata_from_checkpoint(pruned_ckpt, "pruned", str(out / pruned_pt.name)), x_check,
                             settings.parity_tol)
        variants.append(Variant("pruned", "fp32", "pruned", exp["path"],
                                parity_max_abs_diff=exp["parity_max_abs_diff"]))

    cfg = BenchConfig(warmup=settings.warmup, repeats=settings.repeats, threads=settings.threads)
    providers = default_providers()
    sessions: dict[str, Any] = {}
    for v in variants:
        obs.on_stage(f"measuring {v.name} accuracy")
        sessions[v.name] = measure_accuracy(v, bundle, metric_fn, providers, cfg.threads)
    quant_info = quantize_stage(settings, ckpt, src, nets, variants, bundle, example, work, out, ref_metric,
                                direction, metric, obs, note, ref_val, metric_fn)
    for v in variants:
        if v.name not in sessions:
            obs.on_stage(f"measuring {v.name} accuracy")
            sessions[v.name] = measure_accuracy(v, bundle, metric_fn, providers, cfg.threads)
    obs.on_stage(f"measuring latency of {len(variants)} variants and PyTorch eager")
    torch_ms = measure_latency(variants, sessions, model, bundle.x_test, cfg, device)
    gate(variants, ref_metric, direction, metric, settings.max_drop, settings.parity_tol, torch_ms)
    if "latency" in ckpt:  # issue 15: the study's latency budget, each variant timed on its target
        obs.on_stage("timing variants on the study's latency target")
        budget = budget_stage(variants, ckpt, bundle.x_test, src)
    else:
        budget = None
    for v in variants:  # where the file will be once the set is in place
        v.path = str(out / Path(v.path).name)
    best = recommend(variants)
    # issue 12: one name for the recommended file, whichever variant won (copied inside the staged set)
    shutil.copyfile(work / Path(best.path).name, work / STABLE_NAME)
    return {
        "format_version": REPORT_VERSION,
        "checkpoint": str(Path(src).resolve()),
        "out": str(out),
        "task": task.name,
        "metric": metric,
        "direction": direction,
        "settings": asdict(settings),
        "hardware": bench.hardware(),
        "provider": providers[0],
        "baseline": {"variant": "pytorch-eager", metric: ref_metric, "metric_value": ref_metric, "val_metric": ref_val,
                     "device": device,
                     "latency_ms": torch_ms, "arch": ckpt["arch"]},
        "prune": {**prune_info, "path": str(out / pruned_pt.name) if pruned_pt else None},
        "quantization": quant_info,
        "variants": [v.to_json(metric) for v in variants],
        "recommended": best.path,
        "recommended_variant": best.name,
        "recommended_copy": str(out / STABLE_NAME),
        "latency_budget": budget,
        "notes": notes,
    }
