"""Multi-objective search: ``--objectives`` names, study directions, the Pareto front, the best.pt
pick, and a trial pruner for multi-objective studies (Optuna's refuse them).

The first objective is always the task's metric (``accuracy``: maximised, ``rmse``: minimised; the
metrics are the tasks' own, ``automl.tasks.list_metrics``); the others are deployment costs, all
minimised, measured on the built model before it trains:

- ``latency``: median ONNX Runtime latency in ms on the target (``automl.runtime.latency``)
- ``size``: bytes of the exported ONNX file
- ``macs``: multiply-accumulates of one forward pass
- ``params``: parameter count

Pure functions on plain values and Optuna's ``FrozenTrial``s; nothing here trains or prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from automl.exceptions import ConfigError

#: cost objective -> the trial user attribute that holds it (the names ``automl.runtime.latency`` records)
COSTS: dict[str, str] = {"latency": "latency_ms", "size": "onnx_bytes", "macs": "macs", "params": "params"}
#: cost objective -> its unit (for tables and plots)
UNITS: dict[str, str] = {"latency": "ms", "size": "bytes", "macs": "MACs", "params": "parameters"}
#: measured figures a front row shows besides its objectives (user attributes ``automl.runtime.latency`` records)
COST_ATTRS = ("latency_ms", "latency_spread_ms", "onnx_bytes", "macs", "params")


def parse_objectives(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"accuracy,latency"`` -> ``("accuracy", "latency")``; ``()`` for None or ``""`` (one objective).

    ConfigError (one line) for an unknown or repeated name, or a first name that is not a metric.
    """
    if text is None:
        return ()
    parts = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    if not any(parts):
        return ()
    from automl.tasks import list_metrics

    metrics = list_metrics()  # the tasks' metric names
    allowed = f"first the task's metric ({' | '.join(metrics)}), then any of: {', '.join(COSTS)}"
    for p in parts:
        if not p:
            raise ConfigError(f"--objectives {text!r}: an empty name ({allowed})")
        if p not in COSTS and p not in metrics:
            raise ConfigError(f"unknown objective {p!r} in --objectives ({allowed})")
    if len(set(parts)) != len(parts):
        dup = next(p for p in parts if parts.count(p) > 1)
        raise ConfigError(f"--objectives names {dup!r} twice")
    if parts[0] not in metrics:
        raise ConfigError(f"--objectives must start with the task's metric ({' | '.join(metrics)}), "
                          f"e.g. accuracy,{parts[0]}")
    extra = [p for p in parts[1:] if p in metrics]
    if extra:
        raise ConfigError(f"--objectives: only the first objective is a metric ({extra[0]!r} is one too)")
    return tuple(parts)


def check_metric(objectives: Sequence[str], metric: str, task: str) -> None:
    """The first objective must be the task's own metric (known once the data is: tabular regression is rmse)."""
    if objectives and objectives[0] != metric:
        raise ConfigError(f"--objectives starts with {objectives[0]!r}, but the {task} task's metric here is "
                          f"{metric!r}: use --objectives {','.join([metric, *objectives[1:]])}")


def is_multi(objectives: Sequence[str] | None) -> bool:
    """Whether these objectives make a multi-objective study (a metric and at least one cost)."""
    return bool(objectives) and len(objectives) > 1


def cost_names(objectives: Sequence[str] | None) -> tuple[str, ...]:
    """The cost objectives (all but the metric)."""
    return tuple(objectives[1:]) if objectives else ()


def directions(objectives: Sequence[str], metric_direction: str) -> list[str]:
    """Optuna directions: the metric's, then ``minimize`` for every cost."""
    return [metric_direction] + ["minimize"] * len(cost_names(objectives))


def needs_timing(objectives: Sequence[str] | None) -> bool:
    """Whether the objectives need each network exported and timed (``automl.runtime.latency``); params does not."""
    return is_multi(objectives) and any(c != "params" for c in cost_names(objectives))


def cost_values(attrs: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    """The trial's cost objectives, read from its user attributes (``COSTS``); KeyError when one is missing."""
    return [float(attrs[COSTS[c]]) for c in cost_names(objectives)]


def first_value(trial: Any) -> float | None:
    """The metric of a trial (its first value) whether the study has one objective or several;
    ``trial.value`` raises for multi-objective trials."""
    values = getattr(trial, "values", None)
    return None if not values else values[0]


def maximizes(study: Any) -> bool:
    """Whether the study's first objective (the metric) is maximised."""
    return study.directions[0].name == "MAXIMIZE"


def study_objectives(study: Any) -> tuple[str, ...]:
    """The objectives a study was created with (``()``: single-objective)."""
    return tuple((study.user_attrs.get("automl") or {}).get("objectives") or ())


# --- the Pareto front and the best.pt pick ----------------------------------------------------------


def _complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and all(math.isfinite(v) for v in t.values)]


def pareto_front(study: Any) -> list[Any]:
    """The study's Pareto front (Optuna's ``study.best_trials``), most accurate first."""
    front = [t for t in study.best_trials if t.values and all(math.isfinite(v) for v in t.values)]
    sign = -1.0 if maximizes(study) else 1.0
    return sorted(front, key=lambda t: (sign * t.values[0], *t.values[1:], t.number))


def within_budget(trial: Any, max_latency_ms: float | None) -> bool:
    """Whether a trial's measured latency is within the budget (True without a budget or a figure)."""
    if max_latency_ms is None:
        return True
    latency = trial.user_attrs.get("latency_ms")
    return latency is None or float(latency) <= float(max_latency_ms)


def pick_best(study: Any, max_latency_ms: float | None = None) -> Any:
    """The trial best.pt holds: the most accurate completed trial (within the latency budget when
    given), ties going to the cheapest; on a multi-objective study it is a Pareto-front member.
    ValueError when no trial qualifies (as ``study.best_trial``). A single-objective study without a
    budget gives ``study.best_trial`` itself."""
    if len(study.directions) == 1 and max_latency_ms is None:
        return study.best_trial
    trials = [t for t in _complete(study) if within_budget(t, max_latency_ms)]
    if not trials:
        raise ValueError("no completed trial" + ("" if max_latency_ms is None else " within the latency budget"))
    sign = -1.0 if maximizes(study) else 1.0
    return min(trials, key=lambda t: (sign * t.values[0], *t.values[1:], t.number))


def dominated(values: Sequence[float], others: Sequence[Sequence[float]], maximize: bool) -> bool:
    """Whether ``values`` (metric, costs...) is dominated by one of ``others`` (weakly better in
    every objective, strictly in one)."""
    def better_eq(a: Sequence[float], b: Sequence[float]) -> bool:
        m = a[0] >= b[0] if maximize else a[0] <= b[0]
        return m and all(x <= y for x, y in zip(a[1:], b[1:], strict=True))

    return any(better_eq(o, values) and tuple(o) != tuple(values) for o in others)


def could_join_front(study: Any, values: Sequence[float], exclude: int | None = None) -> bool:
    """Whether a trial with ``values`` would be on the study's current front (so its weights are kept)."""
    others = [t.values for t in _complete(study) if t.number != exclude]
    return not dominated(values, others, maximizes(study))


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float], metric_direction: str) -> float:
    """Hypervolume of ``points`` (metric, costs...) against ``reference``, in the units of the
    objectives (e.g. accuracy x ms). Points not better than the reference in every objective add nothing."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    sign = -1.0 if metric_direction == "maximize" else 1.0
    ref = np.array([sign * reference[0], *reference[1:]], dtype=float)
    loss = np.array([[sign * p[0], *p[1:]] for p in points], dtype=float).reshape(-1, len(reference))
    loss = loss[np.all(loss < ref, axis=1)]
    if not len(loss):
        return 0.0
    return float(compute_hypervolume(loss, ref))


# --- trial pruning for multi-objective studies ------------------------------------------------------


@dataclass(frozen=True)
class CostAwarePruner:
    """Stops a trial whose learning curve trails the trials that cost no more than it does.

    A trial can only join the Pareto front if its final metric beats that of every completed trial
    whose costs are all lower or equal (any such trial with a better metric dominates it). Its costs
    are measured before training, so at epoch ``k`` it is compared with exactly those cheaper peers:
    when its validation metric is worse than the ``level`` quantile of theirs at epoch ``k`` (1.0: the
    best of them, i.e. one of them dominates it so far; 0.5: their median), it is stopped. The cheapest
    trials (no cheaper peers) always train to the end, so the low-cost end of the front is never cut.

    ``warmup``: epochs trained before a trial can be judged. ``min_peers``: cheaper completed trials
    needed to judge. ``tolerance``: a peer counts as no more costly up to this fraction above the
    trial's cost (latency timings carry a few per cent of noise). ``level``: the bar is the value
    this fraction of the cheaper peers reached at that epoch (0.5: their median; higher is stricter).
    ``margin``: how far behind the bar a trial may be before it is stopped, as a fraction of the bar
    (0.02: 2% of it; early epochs are noisy, and a slow starter often catches up a small gap).
    """

    warmup: int = 1
    min_peers: int = 2
    tolerance: float = 0.05
    level: float = 0.5
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise ConfigError(f"warmup must be >= 1 epoch, got {self.warmup}")
        if self.min_peers < 1:
            raise ConfigError(f"min_peers must be >= 1, got {self.min_peers}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ConfigError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if not 0.0 < self.level <= 1.0:
            raise ConfigError(f"level must be in (0, 1], got {self.level}")
        if not 0.0 <= self.margin < 1.0:
            raise ConfigError(f"margin must be in [0, 1), got {self.margin}")

    def judge(self, epoch: int, value: float, costs: Sequence[float],
              peers: Sequence[tuple[Sequence[float], Sequence[float]]], maximize: bool, epochs: int) -> str | None:
        """Why the trial should stop after ``epoch`` (1-based) with validation metric ``value``, or None.

        ``peers``: (costs, per-epoch validation metrics) of completed trials; ``epochs``: the most a
        trial trains (the last epoch is never judged: stopping there saves nothing).
        """
        if epoch < self.warmup or epoch >= epochs or not math.isfinite(value):
            return None
        cheaper = [curve[epoch - 1] for pc, curve in peers
                   if len(curve) >= epoch and len(pc) == len(costs)
                   and all(p <= c * (1.0 + self.tolerance) for p, c in zip(pc, costs, strict=True))]
        if len(cheaper) < self.min_peers:
            return None
        bar = _quantile(cheaper, self.level if maximize else 1.0 - self.level)
        slack = self.margin * abs(bar)
        worse = value < bar - slack if maximize else value > bar + slack
        if not worse:
            return None
        what = {0.5: "median", 1.0: "best"}.get(self.level, f"{self.level:.0%} level")
        gap = f" by more than {self.margin:.0%}" if self.margin else ""
        who = "1 completed trial that costs" if len(cheaper) == 1 else f"{len(cheaper)} completed trials that cost"
        return (f"cost-aware trial pruner stopped it after epoch {epoch}: val {value:.4f} trails the {what} "
                f"{bar:.4f} of {who} no more{gap}")


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation, as ``numpy.quantile``; 0.5: the median)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def default_pruner(epochs: int) -> CostAwarePruner:
    """The cost-aware pruner sized for trials of at most ``epochs`` epochs: judged from a tenth of them
    on (the first epoch for up to 19), against the best of the completed trials that cost no more
    (one is enough) at the same epoch, stopped when more than 5% behind it.

    Chosen with benchmarks/moo.py on digits (20 trials x 10 epochs, ``accuracy,latency``, 5 seeds):
    first by replaying candidate rules on the unpruned studies' recorded curves, then by running the
    pruned studies for real. The previous rule (from a quarter of the epochs, the best of at least
    two cheaper trials, no margin) trained 0.46-0.61 of the epochs and lost up to 9% of the
    hypervolume; this one trains about half of them and keeps the hypervolume within 2% on average."""
    return CostAwarePruner(warmup=max(1, epochs // 10), min_peers=1, level=1.0, margin=0.05)


def peers_of(study: Any, objectives: Sequence[str]) -> list[tuple[list[float], list[float]]]:
    """(costs, per-epoch validation metrics) of the study's completed trials with a recorded history."""
    out = []
    n = len(cost_names(objectives))
    for t in _complete(study):
        curve = [float(r["val_metric"]) for r in (t.user_attrs.get("history") or [])
                 if "val_metric" in r and "fold" not in r]
        if curve and len(t.values) == n + 1:
            out.append((list(t.values[1:]), curve))
    return out


def optuna_pruner(objectives: Sequence[str], pruner: str, epochs: int, single: Any) -> Any:
    """The pruner a study is opened with: ``single`` (the ``--pruner`` one) for one objective; for
    several, a ``NopPruner`` (Optuna never asks it: ``trial.should_prune`` raises) that carries the
    ``CostAwarePruner`` the objective applies, or None with ``--pruner none``."""
    if not is_multi(objectives):
        return single
    import optuna

    holder = optuna.pruners.NopPruner()
    holder.cost_aware = None if pruner == "none" else default_pruner(epochs)  # type: ignore[attr-defined]
    return holder
