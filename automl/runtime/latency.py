"""Latency of a network on its deployment target, measured for real: export to ONNX (in memory, the
same exporter settings as ``compress``), time it with ONNX Runtime on the target, and count its
parameters, MACs and ONNX bytes (``automl.runtime.counters``).

The search measures every sampled architecture with random weights *before* training it (a latency
budget, ``--max-latency-ms``); ``compress`` measures its variants on the same target. Timings are
cached by (architecture, input shape, target) in the study's user attributes, so a resumed study and
the other workers of a study reuse them instead of measuring again.

Timing: ``automl.runtime.timing.time_session`` (automl's one timing engine; its constants are
re-exported here), in milliseconds per call of one batch of ``target.batch`` rows. With one CPU
thread each call is timed by the calling thread's CPU time (``LatencyTarget.clock``: on a shared
machine the wall clock also counts the time other processes held the core); otherwise by the wall
clock. Neither removes the slowdown of other work on the same core and caches: time on a quiet
machine.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError
from automl.runtime.counters import count_macs, count_params
from automl.runtime.export import export_bytes
from automl.runtime.timing import (  # noqa: F401  (re-exported: the policy is read here)
    MAX_RUNS,
    MIN_RUNS,
    TIMED_S,
    WARMUP_S,
    time_session,
    timed_seconds,
)

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import torch
    from optuna.trial import FrozenTrial

DEVICES = ("cpu", "cuda")
MAX_BATCH = 4096
MAX_THREADS = 256
CACHE_PREFIX = "latency_cache:"  # study user attribute key prefix of a cached measurement
MAX_OVER_STREAK = 12  # consecutive over-budget trials after which a search stops: the budget looks unmeetable
CONSTRAINT = "latency_ms"  # the Optuna constraint key (its value: latency_ms - max_latency_ms; > 0: over)
#: arch keys that change training but not the inference graph: left out of the cache key
INFERENCE_NEUTRAL = ("dropout", "init")


@dataclass(frozen=True)
class LatencyTarget:
    """Where a network is timed: ``device`` cpu | cuda (ONNX Runtime's provider), ``batch`` rows per
    call, ``threads`` intra-op threads of ONNX Runtime (1: what a single-core deployment gets)."""

    device: str = "cpu"
    batch: int = 1
    threads: int = 1

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"--latency-device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not 1 <= self.batch <= MAX_BATCH:
            raise ConfigError(f"--latency-batch must be an integer in [1, {MAX_BATCH}], got {self.batch!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"--latency-threads must be an integer in [1, {MAX_THREADS}], got {self.threads!r}")
        if self.device == "cuda":
            check_cuda()
        timed_seconds()  # a malformed AUTOML_LATENCY_SECONDS is an error before any work, not in a trial

    @property
    def clock(self) -> str:
        """How a call is timed: ``thread-cpu`` on the CPU with one thread (ONNX Runtime runs the graph
        in the calling thread, so its CPU time is the call's latency less the time the OS gave the
        core to other processes; work running beside it on the same core or cache still slows the
        call itself); ``wall`` otherwise (a thread pool or a GPU works outside the calling thread)."""
        return "thread-cpu" if self.device == "cpu" and self.threads == 1 else "wall"

    def providers(self) -> list[str]:
        """ONNX Runtime execution providers for this target."""
        from automl.runtime.ort import CPU, CUDA

        return [CUDA, CPU] if self.device == "cuda" else [CPU]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """``cpu, batch 1, 1 thread`` — for messages."""
        return f"{self.device}, batch {self.batch}, {self.threads} thread{'s' if self.threads != 1 else ''}"

    @classmethod
    def from_dict(cls, raw: Any) -> LatencyTarget:
        """A target from stored plain types (a study's config, a checkpoint); ConfigError when malformed."""
        if not isinstance(raw, dict) or set(raw) - {"device", "batch", "threads"}:
            raise ConfigError(f"not a latency target: {str(raw)[:80]}")
        return cls(**raw)


def check_cuda() -> None:
    """ConfigError unless ONNX Runtime has the CUDA provider and the machine has a GPU."""
    import onnxruntime as ort

    from automl.runtime.ort import CUDA, gpu_present

    if CUDA not in ort.get_available_providers():
        raise ConfigError("--latency-device cuda: this ONNX Runtime has no CUDA provider "
                          "(install onnxruntime-gpu, or time on cpu)")
    if not gpu_present():
        raise ConfigError("--latency-device cuda: no GPU is visible on this machine (time on cpu)")


def check_budget(ms: float | None) -> None:
    """ConfigError unless ``ms`` is None or a finite number of milliseconds above 0."""
    import math

    if ms is None:
        return
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
        raise ConfigError(f"--max-latency-ms must be a number of milliseconds > 0, got {ms!r}")


@dataclass(frozen=True)
class Measurement:
    """One network on one target: median latency and p10-p90 spread (ms per call), timed calls,
    exported ONNX size (bytes), parameters, MACs of one sample's forward pass."""

    latency_ms: float
    spread_ms: float
    runs: int
    onnx_bytes: int
    params: int
    macs: int

    def to_attrs(self) -> dict[str, Any]:
        """Plain JSON types, as trials and checkpoints record them."""
        return {"latency_ms": self.latency_ms, "latency_spread_ms": self.spread_ms, "latency_runs": self.runs,
                "onnx_bytes": self.onnx_bytes, "params": self.params, "macs": self.macs}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Measurement:
        return cls(latency_ms=float(attrs["latency_ms"]), spread_ms=float(attrs["latency_spread_ms"]),
                   runs=int(attrs.get("latency_runs", 0)), onnx_bytes=int(attrs["onnx_bytes"]),
                   params=int(attrs["params"]), macs=int(attrs["macs"]))


def batch_input(example: torch.Tensor, batch: int) -> np.ndarray:
    """A NumPy batch of ``batch`` rows from ``example`` (its rows repeated as needed)."""
    import numpy as np

    x = example.detach().cpu()
    reps = -(-batch // max(1, len(x)))
    x = x.repeat(reps, *([1] * (x.dim() - 1)))[:batch]
    return np.ascontiguousarray(x.numpy())


def measure(model: torch.nn.Module, example: torch.Tensor, target: LatencyTarget) -> Measurement:
    """Export ``model`` (its weights as they are, eval mode) to ONNX and time it with ONNX Runtime
    on ``target``; ``example`` is one input batch (any number of rows: they are repeated or cut to
    ``target.batch``). The model itself is left untouched (a copy is exported)."""
    blob = export_bytes(model, example[:1])
    latency, spread, runs = time_onnx(blob, example, target)
    return Measurement(latency_ms=latency, spread_ms=spread, runs=runs, onnx_bytes=len(blob),
                       params=count_params(model), macs=count_macs(model, example))


def time_onnx(model: bytes | str, example: torch.Tensor, target: LatencyTarget) -> tuple[float, float, int]:
    """(median ms, p10-p90 spread ms, timed calls) of an ONNX model (bytes or a file path) on
    ``target``, fed ``target.batch`` rows made from ``example`` — how ``compress`` re-times its variants
    on a study's target, the way the search timed the trials."""
    import onnxruntime as ort

    from automl.runtime.ort import session_options

    src = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(src, sess_options=session_options(target.threads, spinning=True),
                                providers=target.providers())
    clock = time.thread_time if target.clock == "thread-cpu" else time.perf_counter
    return time_session(sess, {"input": batch_input(example, target.batch)}, clock)


# --- the cache in a study's storage -----------------------------------------------------------------


def graph_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` without the keys that do not change the exported graph (dropout rates, the weight
    initialisation): two trials differing only there share one timing."""
    return {k: v for k, v in arch.items()
            if not any(k == n or k.endswith("_" + n) for n in INFERENCE_NEUTRAL)}


def cache_key(arch: dict[str, Any], input_shape: Any, target: LatencyTarget) -> str:
    """The study user-attribute key of a measurement: a hash of the architecture (the plain arch dict
    the builder takes, less what does not change the inference graph), the input shape without batch
    and the target."""
    raw = json.dumps({"arch": graph_arch(arch), "input_shape": list(input_shape), "target": target.to_dict()},
                     sort_keys=True, default=str)
    return CACHE_PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:24]


def cached(study: optuna.Study, key: str) -> Measurement | None:
    """The measurement stored in ``study`` under ``key``; None when there is none (or it is malformed)."""
    raw = study.user_attrs.get(key)
    if not isinstance(raw, dict):
        return None
    try:
        return Measurement.from_attrs(raw)
    except (KeyError, TypeError, ValueError):
        return None


def remember(study: optuna.Study, key: str, m: Measurement) -> None:
    """Store ``m`` in ``study`` under ``key`` (workers measuring the same network at once write the same
    kind of figure; the last one stays)."""
    study.set_user_attr(key, m.to_attrs())


def measure_cached(study: optuna.Study | None, arch: dict[str, Any], model: torch.nn.Module, example: torch.Tensor,
                   target: LatencyTarget) -> tuple[Measurement, bool]:
    """(measurement, whether it came from the study's cache) of the network ``arch`` on ``target``."""
    key = cache_key(arch, tuple(example.shape[1:]), target)
    hit = cached(study, key) if study is not None else None
    if hit is not None:
        return hit, True
    m = measure(model, example, target)
    if study is not None:
        remember(study, key, m)
    return m, False


def over_budget_reason(latency_ms: float, max_latency_ms: float, target: LatencyTarget, fitted: bool = False) -> str:
    """The reason an over-budget trial records."""
    how = "fitted first: a tree ensemble has no shape before it is fitted" if fitted else "not trained"
    return (f"over the latency budget: {latency_ms:.4g} ms > {max_latency_ms:g} ms (ONNX Runtime, {target.label()}); "
            f"{how}")


@dataclass(frozen=True)
class LatencySpec:
    """What a search does about latency: time every network on ``target``; with ``max_latency_ms``
    (``--max-latency-ms``), a budget (over it: the trial ends before training and the sampler is told)."""

    max_latency_ms: float | None = None
    target: LatencyTarget = LatencyTarget()

    def __post_init__(self) -> None:
        check_budget(self.max_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        """Plain types, as a study's config and a checkpoint store it."""
        return {"max_latency_ms": self.max_latency_ms, "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, raw: Any) -> LatencySpec | None:
        """The spec a study or checkpoint stored (the one reader of a stored budget; one written before
        the budget kept its option's name has ``max_ms``); None for none; ConfigError when malformed."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ConfigError(f"not a latency spec: {str(raw)[:80]}")
        max_latency_ms = raw["max_latency_ms"] if "max_latency_ms" in raw else raw.get("max_ms")
        return cls(max_latency_ms=max_latency_ms, target=LatencyTarget.from_dict(raw.get("target") or {}))

    def describe(self) -> str:
        """``0.05 ms on cpu, batch 1, 1 thread`` — for notes."""
        ms = self.max_latency_ms
        return (f"{ms:g} ms on " if ms is not None else "timed on ") + self.target.label()


def stored_max_latency_ms(config: Any) -> float | None:
    """The ``--max-latency-ms`` a study was created with (its stored ``automl`` config), or None: read
    by ``LatencySpec.from_dict``; a malformed entry reads as none (listing a study must still work)."""
    try:
        spec = LatencySpec.from_dict(config.get("latency") if isinstance(config, dict) else None)
    except (ConfigError, TypeError):
        return None
    return spec.max_latency_ms if spec is not None else None


# --- what a search says about its budget ------------------------------------------------------------

MEASURE_KEYS = ("latency_ms", "latency_spread_ms", "onnx_bytes", "params", "macs")


def trial_figures(trial: FrozenTrial | None) -> dict[str, Any]:
    """The latency figures a trial recorded (empty when it was not timed)."""
    attrs = getattr(trial, "user_attrs", {}) or {}
    return {k: attrs[k] for k in MEASURE_KEYS if k in attrs}


def budget_summary(study: optuna.Study, spec: LatencySpec, best_trial: int | None = None) -> dict[str, Any]:
    """The budget, the target and what the study's trials did against it: timed, over the budget
    (never trained), timings reused from the cache, seconds spent timing, the best trial's figures."""
    trials = study.get_trials(deepcopy=False)
    timed = [t for t in trials if "latency_ms" in t.user_attrs]
    over = [t for t in timed if t.user_attrs.get("over_budget")]
    best = next((t for t in trials if t.number == best_trial), None)
    figures = trial_figures(best) if best is not None else {}
    return {
        "max_latency_ms": spec.max_latency_ms, "target": spec.target.to_dict(), "clock": spec.target.clock,
        "n_timed": len(timed), "n_over_budget": len(over), "n_within_budget": len(timed) - len(over),
        "n_cached": sum(bool(t.user_attrs.get("latency_cached")) for t in timed),
        "timing_seconds": round(sum(float(t.user_attrs.get("latency_seconds") or 0) for t in timed), 2),
        "best_trial": best_trial, "best": figures,
        "best_within_budget": (None if "latency_ms" not in figures or spec.max_latency_ms is None
                               else bool(figures["latency_ms"] <= spec.max_latency_ms)),
    }


def budget_note(summary: dict[str, Any]) -> str:
    """One line for the search summary."""
    target = LatencyTarget(**summary["target"])
    best = summary.get("best") or {}
    line = (f"latency budget {summary['max_latency_ms']:g} ms ({target.label()}): "
            f"{summary['n_over_budget']} of {summary['n_timed']} timed trials over it (not trained)")
    if "latency_ms" in best:
        line += f"; best trial {summary['best_trial']}: {best['latency_ms']:.4g} ms, {best.get('macs', 0):,} MACs"
    return line


def checkpoint_latency(spec: LatencySpec | None, trial: FrozenTrial) -> dict[str, Any]:
    """What best.pt keeps of the study's latency budget: ``{"latency": {max_latency_ms, target, measured}}``
    (``compress`` times its variants on the same target and says whether each meets the budget);
    empty without a budget."""
    if spec is None:
        return {}
    return {"latency": {**spec.to_dict(), "measured": trial_figures(trial)}}


def check_streak(run: Any, trial: Any, streak: int) -> int:
    """The count of consecutive over-budget trials after ``trial``; a ConfigError once it reaches
    ``MAX_OVER_STREAK``: the budget looks unmeetable, and the message names the fastest network timed
    and the architecture parameters to shrink."""
    if not trial.user_attrs.get("over_budget"):
        return 0
    streak += 1
    if streak < MAX_OVER_STREAK:
        return streak
    timed = [t for t in run.study.get_trials(deepcopy=False) if "latency_ms" in t.user_attrs]
    fastest = min(timed, key=lambda t: t.user_attrs["latency_ms"])
    try:
        family = run.task.model_family(dict(fastest.params))
        arch_params = [n for n in run.space.names if n in family.params and n in fastest.params
                       and not any(k in n for k in INFERENCE_NEUTRAL)]
    except ValueError:
        arch_params = []
    shown = ", ".join(f"{n}={fastest.params[n]}" for n in arch_params) or "its parameters"
    spec = run.latency
    raise ConfigError(
        f"{streak} trials in a row were over the latency budget {spec.max_latency_ms:g} ms ({spec.target.label()}); "
        f"the fastest network timed takes {fastest.user_attrs['latency_ms']:.4g} ms ({shown}): "
        f"shrink the space's {', '.join(arch_params) or 'architecture parameters'} or raise --max-latency-ms"
    )
