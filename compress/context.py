"""What every compress stage reads and writes: the settings (checked once), the observer the CLI
draws progress with, and one run context (``CompressContext``) that holds the checkpoint, the model,
its data, the networks to export and the variants made so far.

``compress.pipeline`` (the one-shot ``automl compress``) and ``compress.search`` (each candidate of
``compress --search``) build a context and run the registered stages (``compress.stages``) in order
over it. This module imports nothing heavy: a wrong option is refused before PyTorch is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.device import check_device_name
from automl.exceptions import ConfigError
from compress.bench import BenchConfig
from compress.checks import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, check_distill_args
from compress.int8tune import CALIBRATION_CHOICES
from compress.prune import check_prune_args
from compress.quantize import check_quantize_args
from compress.verdict import Variant

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch
    from torch import nn

    from automl.tasks import DataBundle, Task

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
            raise ConfigError(f"max drop must be >= 0 (metric points, or per cent for an error), got {self.max_drop}")
        check_device_name(self.device)
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = library default), got {self.threads}")
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"warmup must be >= 0 and repeats >= 1, got {self.warmup} and {self.repeats}")

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.checkpoint).parent / "compressed"

    def bench(self) -> BenchConfig:
        """How this run times its variants."""
        return BenchConfig(warmup=self.warmup, repeats=self.repeats, threads=self.threads)


class CompressObserver:
    """Receives progress events; the CLI draws them with Rich. The default does nothing."""

    def on_stage(self, name: str) -> None:
        """A stage began (export, prune, fine-tune, quantize, measure …)."""

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        """Fine-tuning finished an epoch."""

    def on_note(self, message: str) -> None:
        """Something the user should know (a skipped step and why)."""


class TimedObserver(CompressObserver):
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
class Network:
    """A PyTorch network that variants are exported from (the original, or the pruned one)."""

    name: str  # the variant name of its FP32 ONNX file: fp32 | pruned
    module: nn.Module
    ckpt: dict[str, Any]  # the checkpoint whose task, metric and preprocessing its files carry
    src: str  # the checkpoint file its ONNX metadata names as its source
    meta_kind: str  # what its FP32 ONNX metadata calls it: fp32 | pruned
    prefix: str  # file name stem in the output folder: model | model.pruned
    stage: str = ""  # the observer's stage name while it is exported ("" : none is reported)


@dataclass
class CompressContext:
    """One compress run (or one ``--search`` candidate), read and written by the stages in order.

    ``chain``: a ``--search`` candidate — one network (pruned when pruning applies) goes through
    export and quantization, and the last variant is the candidate; the one-shot pipeline
    (``chain=False``) exports the original and the pruned network and quantizes each.
    """

    settings: CompressSettings
    obs: CompressObserver
    ckpt: dict[str, Any]
    task: Task
    model: nn.Module
    bundle: DataBundle
    example: torch.Tensor  # one input batch the exporter traces
    device: str  # where fine-tuning runs
    work: Path  # where files are written
    out: Path  # where they are once the run is complete (the report names them there)
    ref_val: float  # the original model's validation metric
    ref_metric: float | None = None  # ... and its test metric (the one-shot pipeline's gate)
    chain: bool = False
    echo_notes: bool = True  # notes also go to the observer (a --search candidate keeps them in its trial)
    metric_fn: Callable[..., float] | None = None
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    networks: list[Network] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # report sections by stage: prune, quantization
    pruned_pt: Path | None = None
    exported: set[str] = field(default_factory=set)  # networks already exported
    params: dict[str, Any] = field(default_factory=dict)  # a --search trial's sampled values (stage params)
    sessions: dict[str, ort.InferenceSession] = field(default_factory=dict)  # variant -> its measured session
    lineage_data: dict[str, Any] | None = None  # the data fingerprint of this run (compress.lineage.data_print)
    outputs: dict[str, Any] = field(default_factory=dict)  # variant -> its outputs on the test split (NumPy)

    def __post_init__(self) -> None:
        if self.metric_fn is None:
            self.metric_fn = self.task.metric_fn()
        if not self.networks:
            meta_kind = "pruned" if self.chain and "pruned_from" in self.ckpt else "fp32"
            self.networks.append(Network("fp32", self.model, self.ckpt, str(self.settings.checkpoint), meta_kind,
                                         "model", "" if self.chain else "exporting FP32 ONNX"))

    @property
    def bench(self) -> BenchConfig:
        return self.settings.bench()

    @property
    def x_check(self) -> torch.Tensor:
        """Real test inputs of the PyTorch-vs-ONNX parity check."""
        return self.bundle.x_test[:PARITY_ROWS]

    def note(self, message: str) -> None:
        """Record a note for the report (and tell the observer, unless ``echo_notes`` is off)."""
        self.notes.append(message)
        if self.echo_notes:
            self.obs.on_note(message)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def add_variant(self, variant: Variant) -> Variant:
        self.variants.append(variant)
        return variant
