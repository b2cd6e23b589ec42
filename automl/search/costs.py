"""What a trial costs to deploy: the latency budget check, the cost objectives of a multi-objective
study and their trial pruning, and ``--score`` (the quantized model's validation metric and timing).

``Costs`` is held by ``automl.search.objective.Objective``, one per trial loop; it reads the run
object (``TrialRun``: task, data, latency spec, objectives, score mode, seed) and records its figures
on the trial's user attributes. It never trains and never decides a trial's state itself: an
over-budget network comes back as a reason, and the objective records and prunes it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import optuna
import torch

from automl.exceptions import TrialFailedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from automl.runtime.latency import LatencyTarget
    from automl.search.run import TrialRun


class Costs:
    """Latency, size and quantized-accuracy figures of a trial's network (see the module text).

    ``quantizable``: whether the current trial's family is judged quantized (``--score``; set by
    ``start_trial``)."""

    def __init__(self, run: TrialRun, metric_fn: Callable[..., float], guard: Any,
                 cross_validated: bool) -> None:
        self.run = run
        self.metric_fn = metric_fn
        self.guard = guard  # Ctrl-C waits for the storage reads of the cost-aware trial pruner
        self.cross_validated = cross_validated  # cross-validated trials are not quantized
        self.quantizable = False
        from automl.search.moo import is_multi

        self.objectives = tuple(run.objectives) if is_multi(run.objectives) else ()  # () : the metric only

    def start_trial(self, trial: optuna.Trial, family: Any) -> None:
        """Whether this trial is judged quantized (``--score`` and a family that can be); one that
        cannot keeps its FP32 value, and its trial says why."""
        score = self.run.score
        self.quantizable = score != "none" and not family.quantize_unsupported and not self.cross_validated
        if score != "none" and not self.quantizable:
            why = (f"{family.name}: {family.quantize_unsupported}" if family.quantize_unsupported
                   else "cross-validated trials are not quantized")
            trial.set_user_attr("score", score)
            trial.set_user_attr("score_note", f"FP32 value kept ({why})")

    def measure(self, trial: optuna.Trial, model: torch.nn.Module, params: dict[str, Any],
                arch: dict[str, Any] | None = None) -> list[float]:
        """The trial's cost objectives (``automl.search.moo.COSTS``), from its user attributes when the
        latency check recorded them already, else measured here (the study's cache first) and recorded."""
        from automl.search.moo import COSTS, cost_names

        if not self.objectives:
            return []
        attrs = trial.user_attrs
        need = [c for c in cost_names(self.objectives) if COSTS[c] not in attrs]
        if need == ["params"]:
            trial.set_user_attr("params", int(sum(p.numel() for p in model.parameters())))
        elif need:
            from automl.runtime.latency import LatencyTarget

            run = self.run
            target = run.latency.target if run.latency is not None else LatencyTarget()
            arch = arch if arch is not None else run.task.arch_from_params(params, run.bundle.meta)
            m, hit = self._timing(trial, arch, model, target)
            for key, v in m.to_attrs().items():
                trial.set_user_attr(key, v)
            trial.set_user_attr("latency_cached", hit)
        attrs = trial.user_attrs
        return [float(attrs[COSTS[c]]) for c in cost_names(self.objectives)]

    def prune(self, trial: optuna.Trial, epoch: int, value: float, costs: list[float], epochs: int) -> None:
        """Multi-objective trial pruning (``automl.search.moo.CostAwarePruner``, held by the study's pruner
        slot): TrialPruned when the curve trails the completed trials that cost no more. ``epochs``:
        the most the trial trains."""
        from automl.search.moo import maximizes, peers_of

        rule = getattr(trial.study.pruner, "cost_aware", None)
        if rule is None:
            return
        with self.guard.critical():
            peers = peers_of(trial.study, self.objectives)
        reason = rule.judge(epoch, value, costs, peers, maximizes(trial.study), epochs)
        if reason is not None:
            raise optuna.TrialPruned(reason)

    def over_latency_budget(self, trial: optuna.Trial, model: torch.nn.Module, arch: dict[str, Any],
                            fitted: bool = False) -> str | None:
        """Time ``model`` on the latency target (the study's cache first) and record the figures; with a
        budget, tell the sampler the constraint (``latency_ms - max_latency_ms``, > 0: over it) and return
        why an over-budget network must not go on (None: within it, or no budget). ``fitted``: the
        network was trained already (a tree ensemble has no shape before)."""
        from automl.runtime.latency import CONSTRAINT, over_budget_reason

        spec = self.run.latency
        assert spec is not None
        t0 = time.perf_counter()
        m, hit = self._timing(trial, arch, model, spec.target)
        for key, value in m.to_attrs().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("latency_cached", hit)
        trial.set_user_attr("latency_seconds", round(time.perf_counter() - t0, 3))
        if spec.max_latency_ms is None:
            return None
        trial.set_constraint(CONSTRAINT, m.latency_ms - spec.max_latency_ms)
        if m.latency_ms <= spec.max_latency_ms:
            return None
        trial.set_user_attr("over_budget", True)
        return over_budget_reason(m.latency_ms, spec.max_latency_ms, spec.target, fitted=fitted)

    def _timing(self, trial: optuna.Trial, arch: dict[str, Any], model: torch.nn.Module,
                target: LatencyTarget) -> tuple[Any, bool]:
        """(measurement, from the study's cache) of ``arch`` on ``target``: with ``--score`` the quantized
        graph's (its FP32 and quantized latency and ONNX bytes recorded side by side), else the FP32 one."""
        from automl.runtime.latency import measure_cached

        run = self.run
        example = run.task.example_input(run.bundle.meta, 1)
        if not self.quantizable:
            return measure_cached(trial.study, arch, model, example, target)
        from automl.runtime import int8

        try:
            fp32, m, hit = int8.measure_cached(trial.study, arch, model, example, target, run.score,
                                               run.bundle.x_train)
        except RuntimeError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailedError(str(exc)) from None
        mode = run.score
        for key, value in (("latency_ms_fp32", fp32.latency_ms), (f"latency_ms_{mode}", m.latency_ms),
                           ("onnx_bytes_fp32", fp32.onnx_bytes), (f"onnx_bytes_{mode}", m.onnx_bytes)):
            trial.set_user_attr(key, value)
        return m, hit

    def score(self, trial: optuna.Trial, model: torch.nn.Module, fp32_value: float) -> float:
        """``--score``: quantize the trained ``model`` (``automl.runtime.int8``, calibrated on training rows)
        and return its validation metric under ONNX Runtime; both figures are recorded."""
        from automl.runtime import int8

        run = self.run
        mode, t0 = run.score, time.perf_counter()
        example = run.task.example_input(run.bundle.meta, 1)
        try:
            blob = int8.quantized(model, example, mode, run.bundle.x_train, seed=run.seed)
            value = int8.ort_metric(blob, run.bundle.x_val, run.bundle.y_val, self.metric_fn, mode)
        except RuntimeError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailedError(str(exc)) from None
        trial.set_user_attr("score", mode)
        trial.set_user_attr("val_fp32", round(float(fp32_value), 6))
        trial.set_user_attr(f"val_{mode}", round(float(value), 6))
        trial.set_user_attr("score_seconds", round(time.perf_counter() - t0, 3))
        return value
