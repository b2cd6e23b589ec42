"""What a trial costs to deploy, for ``automl.search.objective.Objective``: the latency budget check, the
cost objectives of a multi-objective study, their trial pruning, and ``--score`` (the quantized
model's validation metric and timing).

A mixin: its methods use the objective's ``task``, ``bundle``, ``latency``, ``objectives``,
``score``, ``seed``, ``metric_fn``, ``guard``, ``epochs``, ``_quantizable`` and ``_record``.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
import torch

from automl.exceptions import TrialFailedError


class DeploymentCosts:
    """Latency, size and quantized-accuracy figures of a trial's network (see the module text)."""

    task: Any
    bundle: Any
    latency: Any
    objectives: tuple[str, ...]
    score: str
    seed: int
    metric_fn: Any
    guard: Any
    epochs: int
    _quantizable: bool

    def _costs(self, trial: optuna.Trial, model: torch.nn.Module, params: dict[str, Any],
               arch: dict[str, Any] | None = None) -> list[float]:
        """The trial's cost objectives (``automl.search.moo.COSTS``), from its user attributes when the latency
        check recorded them already, else measured here (the study's cache first) and recorded."""
        from automl.search.moo import COSTS, cost_names

        attrs = trial.user_attrs
        need = [c for c in cost_names(self.objectives) if COSTS[c] not in attrs]
        if need == ["params"]:
            trial.set_user_attr("params", int(sum(p.numel() for p in model.parameters())))
        elif need:
            from automl.runtime.latency import LatencyTarget

            target = self.latency.target if self.latency is not None else LatencyTarget()
            arch = arch if arch is not None else self.task.arch_from_params(params, self.bundle.meta)
            m, hit = self._timing(trial, arch, model, target)
            for key, v in m.to_attrs().items():
                trial.set_user_attr(key, v)
            trial.set_user_attr("latency_cached", hit)
        attrs = trial.user_attrs
        return [float(attrs[COSTS[c]]) for c in cost_names(self.objectives)]

    def _cost_aware_prune(self, trial: optuna.Trial, epoch: int, value: float, costs: list[float]) -> None:
        """Multi-objective trial pruning (``automl.search.moo.CostAwarePruner``, held by the study's pruner
        slot): TrialPruned when the curve trails the completed trials that cost no more."""
        from automl.search.moo import maximizes, peers_of

        rule = getattr(trial.study.pruner, "cost_aware", None)
        if rule is None:
            return
        with self.guard.critical():
            peers = peers_of(trial.study, self.objectives)
        reason = rule.judge(epoch, value, costs, peers, maximizes(trial.study), self.epochs)
        if reason is not None:
            raise optuna.TrialPruned(reason)

    def _check_latency(self, trial: optuna.Trial, model: torch.nn.Module, arch: dict[str, Any],
                       history: list[dict[str, float]] | None = None, start: float | None = None) -> None:
        """Time ``model`` on the latency target (the study's cache first) and record the figures; with a
        budget, tell the sampler the constraint (``latency_ms - budget``, > 0: over it), and end an
        over-budget trial (pruned, with the figure and the budget as its reason)."""
        from automl.runtime.latency import CONSTRAINT, over_budget_reason

        spec = self.latency
        t0 = time.perf_counter()
        m, hit = self._timing(trial, arch, model, spec.target)
        for key, value in m.to_attrs().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("latency_cached", hit)
        trial.set_user_attr("latency_seconds", round(time.perf_counter() - t0, 3))
        if spec.max_ms is None:
            return
        trial.set_constraint(CONSTRAINT, m.latency_ms - spec.max_ms)
        if m.latency_ms > spec.max_ms:
            reason = over_budget_reason(m.latency_ms, spec.max_ms, spec.target, fitted=history is not None)
            trial.set_user_attr("over_budget", True)
            self._record(trial, history or [], start if start is not None else t0, reason=reason, pruned_at=0)
            raise optuna.TrialPruned(reason)

    def _timing(self, trial: optuna.Trial, arch: dict[str, Any], model: torch.nn.Module,
                target: Any) -> tuple[Any, bool]:
        """(measurement, from the study's cache) of ``arch`` on ``target``: with ``--score`` the quantized
        graph's (its FP32 and quantized latency and ONNX bytes recorded side by side), else the FP32 one."""
        from automl.runtime.latency import measure_cached

        example = self.task.example_input(self.bundle.meta, 1)
        if not self._quantizable:
            return measure_cached(trial.study, arch, model, example, target)
        from automl.runtime import int8

        try:
            fp32, m, hit = int8.measure_cached(trial.study, arch, model, example, target, self.score,
                                               self.bundle.x_train)
        except RuntimeError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailedError(str(exc)) from None
        mode = self.score
        for key, value in (("latency_ms_fp32", fp32.latency_ms), (f"latency_ms_{mode}", m.latency_ms),
                           ("onnx_bytes_fp32", fp32.onnx_bytes), (f"onnx_bytes_{mode}", m.onnx_bytes)):
            trial.set_user_attr(key, value)
        return m, hit

    def _score(self, trial: optuna.Trial, model: torch.nn.Module, fp32_value: float) -> float:
        """``--score``: quantize the trained ``model`` (``automl.runtime.int8``, calibrated on training rows) and
        return its validation metric under ONNX Runtime; both figures are recorded."""
        from automl.runtime import int8

        mode, t0 = self.score, time.perf_counter()
        example = self.task.example_input(self.bundle.meta, 1)
        try:
            blob = int8.quantized(model, example, mode, self.bundle.x_train, seed=self.seed)
            value = int8.ort_metric(blob, self.bundle.x_val, self.bundle.y_val, self.metric_fn, mode)
        except RuntimeError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailedError(str(exc)) from None
        trial.set_user_attr("score", mode)
        trial.set_user_attr("val_fp32", round(float(fp32_value), 6))
        trial.set_user_attr(f"val_{mode}", round(float(value), 6))
        trial.set_user_attr("score_seconds", round(time.perf_counter() - t0, 3))
        return value

    def _score_note(self, trial: optuna.Trial, family: Any) -> None:
        """A trial ``--score`` cannot quantize keeps its FP32 value, and says why."""
        why = (f"{family.name}: {family.quantize_unsupported}" if family.quantize_unsupported
               else "cross-validated trials are not quantized")
        trial.set_user_attr("score", self.score)
        trial.set_user_attr("score_note", f"FP32 value kept ({why})")
