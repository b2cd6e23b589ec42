"""The one timing engine of automl: timed calls of an ONNX Runtime session (or any zero-argument
call), in milliseconds per call of one batch.

Two policies share its blocks of timed calls and its warm-up:

- ``time_session``: a search's latency budget and ``compress``'s re-timing on a study's target
  (``automl.runtime.latency``). A warm-up (at least ``WARMUP_CALLS`` calls and ``WARMUP_S`` seconds),
  then timed calls until ``TIMED_S`` seconds (``AUTOML_LATENCY_SECONDS`` changes it) or ``MAX_RUNS``
  calls (at least ``MIN_RUNS``), in rounds of ``ROUND_CALLS`` calls or ``ROUND_S`` seconds; the
  figure is the lowest round median (the median of all calls when fewer than two rounds have
  ``MIN_ROUND_CALLS`` calls), the spread the p10-p90 range of all calls. On a shared machine,
  bursts of other work (on this 2-core VM, 0.1-0.5 s long) doubled a single median of a 20-µs
  network; the lowest round median is the figure of the quietest stretch.
- ``latencies``: ``compress``'s table (p50/p95 at batch 1 and 64 of several runners, timed in
  interleaved blocks after a warm-up that runs until the timings settle, ``warm_up``).

ONNX Runtime's ``run`` returns host arrays, so a CUDA run is synchronised by itself.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    import torch

from automl.exceptions import ConfigError

WARMUP_CALLS = 5
WARMUP_S = 0.05  # seconds of untimed calls at least (thread pools, allocator, first-call graph work)
MIN_RUNS = 10
MAX_RUNS = 20000  # bounds the calls of a fast network (about 20 µs a call here): TIMED_S decides first
TIMED_S = 0.3  # timed calls stop after this many seconds (or MAX_RUNS calls), never before MIN_RUNS
MAX_TIMED_S = 60.0  # the most AUTOML_LATENCY_SECONDS may ask for
ROUND_CALLS = 100  # timed calls per round (or ROUND_S seconds): the figure is the lowest round median
ROUND_S = 0.05
MIN_ROUND_CALLS = 5  # a round with fewer calls (a slow network) does not count as a round of its own

WINDOW = 5  # calls per settling warm-up window; it ends when two consecutive windows' medians agree
SETTLE_TOL = 0.10  # ... within 10% of each other
ROUNDS_TOL = 0.25  # timed rounds whose medians spread more than 25% of the overall median: not settled

Call = Callable[[], Any]
Runner = Callable[[int], Call]  # batch size -> a zero-argument call to time
Clock = Callable[[], float]


class TimingConfig(Protocol):
    """How ``latencies`` times (``compress.bench.BenchConfig`` is one)."""

    warmup: int
    repeats: int
    warmup_max_s: float
    batches: tuple[int, ...]


def timed_block(call: Call, calls: int, clock: Clock = time.perf_counter, max_s: float | None = None) -> list[float]:
    """Seconds (by ``clock``) of up to ``calls`` calls of ``call``, stopping early once ``max_s``
    wall-clock seconds have passed (None: no limit)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < calls and (max_s is None or time.perf_counter() - start < max_s):
        t0 = clock()
        call()
        times.append(clock() - t0)
    return times


def median(xs: list[float]) -> float:
    import numpy as np

    return float(np.median(np.asarray(xs, dtype=np.float64)))


def percentiles(times_s: list[float]) -> dict[str, float]:
    """p50 and p95 of a list of seconds, in milliseconds."""
    import numpy as np

    arr = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"p50": round(float(np.percentile(arr, 50)), 4), "p95": round(float(np.percentile(arr, 95)), 4)}


def timed_seconds() -> float:
    """Seconds of timed calls per ``time_session``: ``AUTOML_LATENCY_SECONDS`` from the environment
    (longer on a noisy machine, shorter for a quick check; the test suite sets 0.05), else ``TIMED_S``;
    ConfigError when it is not a number of seconds in (0, MAX_TIMED_S]."""
    raw = os.environ.get("AUTOML_LATENCY_SECONDS", "").strip()
    if not raw:
        return TIMED_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_TIMED_S:
        raise ConfigError(f"AUTOML_LATENCY_SECONDS must be a number of seconds in (0, {MAX_TIMED_S:g}], "
                          f"got {raw[:20]!r}")
    return value


def time_session(sess: ort.InferenceSession, feed: dict[str, Any],
                 clock: Clock = time.perf_counter) -> tuple[float, float, int]:
    """(latency ms: the lowest round median, p10-p90 spread ms, timed calls) of ``sess.run`` on ``feed``
    after a warm-up, each call timed by ``clock`` (seconds); how long to time is always decided by the
    wall clock."""
    import numpy as np

    def call() -> Any:
        return sess.run(None, feed)

    start = time.perf_counter()
    n = 0
    while n < WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        call()
        n += 1
    timed_s = timed_seconds()
    times: list[float] = []
    rounds: list[float] = []  # the median of each round of at least MIN_ROUND_CALLS calls
    start = time.perf_counter()
    while len(times) < MIN_RUNS or (len(times) < MAX_RUNS and time.perf_counter() - start < timed_s):
        this = timed_block(call, min(ROUND_CALLS, MAX_RUNS - len(times)), clock, ROUND_S)
        times.extend(this)
        if len(this) >= MIN_ROUND_CALLS:
            rounds.append(float(np.median(this)))
    ms = np.asarray(times) * 1e3
    p10, p50, p90 = np.percentile(ms, [10, 50, 90])
    figure = min(rounds) * 1e3 if len(rounds) >= 2 else float(p50)
    return round(figure, 4), round(float(p90 - p10), 4), len(times)


def warm_up(call: Call, min_calls: int, max_s: float, window: int = WINDOW, tol: float = SETTLE_TOL,
            clock: Clock = time.perf_counter) -> dict[str, Any]:
    """Call ``call`` at least ``min_calls`` times, then in windows of ``window`` calls until two
    consecutive windows' median times differ by at most ``tol`` (relative) or ``max_s`` seconds have
    passed, all timed by ``clock``. Returns ``{"warmup_calls", "warmup_s", "settled"}``."""
    start = clock()
    for _ in range(min_calls):
        call()
    n, prev = min_calls, None
    while True:
        med = median(timed_block(call, window, clock))
        n += window
        if prev is not None and abs(med - prev) <= tol * min(med, prev):
            settled = True
            break
        prev = med
        if clock() - start > max_s:
            settled = False
            break
    return {"warmup_calls": n, "warmup_s": round(clock() - start, 3), "settled": settled}


def rounds_spread(rounds: list[list[float]]) -> float | None:
    """(max - min) of the rounds' median times over the median of all times, in percent; None when
    the rounds are too short (under 3 calls) for their medians to mean anything."""
    rounds = [r for r in rounds if r]
    if len(rounds) < 2 or min(len(r) for r in rounds) < 3:
        return None
    meds = [median(r) for r in rounds]
    overall = median([t for r in rounds for t in r])
    return round(100.0 * (max(meds) - min(meds)) / overall, 1) if overall > 0 else None


def batch_of(x: torch.Tensor | np.ndarray, n: int) -> torch.Tensor | np.ndarray:
    """The first ``n`` rows of ``x``, repeated when ``x`` has fewer (real inputs, fixed batch)."""
    import numpy as np

    if len(x) >= n:
        return x[:n]
    reps = -(-n // max(1, len(x)))
    if hasattr(x, "repeat"):
        return x.repeat(reps, *([1] * (x.dim() - 1)))[:n]
    return np.concatenate([x] * reps)[:n]


def ort_runner(sess: ort.InferenceSession, x: torch.Tensor | np.ndarray) -> Runner:
    """Calls of an ONNX Runtime session on the first ``b`` real rows of ``x``."""
    import numpy as np

    def make(b: int) -> Call:
        xb = batch_of(x, b)
        feed = {"input": np.ascontiguousarray(xb.numpy() if hasattr(xb, "numpy") else xb)}
        return lambda: sess.run(["logits"], feed)

    return make


def latencies(runners: dict[str, Runner], cfg: TimingConfig, rounds: int = 5,
              clock: Clock = time.perf_counter) -> dict[str, dict[str, dict[str, Any]]]:
    """``{name: {"b1": {"p50", "p95", "spread_pct", "warmup_calls", "settled"}, "b64": {...}}}`` in ms.

    ``spread_pct``: how far the medians of the interleaved rounds lie apart (percent of the median;
    None for rounds too short to tell); ``settled``: the warm-up settled and the rounds agree within
    ROUNDS_TOL. The runners are timed in interleaved blocks (``rounds`` blocks each, the order rotating), so a
    change of machine load during the measurement hits every variant alike and ratios stay fair;
    each block starts with a short re-warm-up, since the previous runner's threads (ONNX Runtime
    and OpenMP spin-wait) still occupy the cores for a moment after it returns. ``clock``: seconds
    (the wall clock; tests pass a fake one).
    """
    names = list(runners)
    rounds = max(1, min(rounds, cfg.repeats))
    res: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    for b in cfg.batches:
        calls = {n: runners[n](b) for n in names}
        warm = {n: warm_up(calls[n], cfg.warmup, cfg.warmup_max_s, clock=clock) for n in names}
        times: dict[str, list[float]] = {n: [] for n in names}
        per_round: dict[str, list[list[float]]] = {n: [] for n in names}
        for r in range(rounds):
            per_block = cfg.repeats // rounds + (1 if r < cfg.repeats % rounds else 0)
            for k in range(len(names)):
                n = names[(r + k) % len(names)]
                for _ in range(max(1, cfg.warmup // rounds)):
                    calls[n]()
                block = timed_block(calls[n], per_block, clock)
                times[n] += block
                per_round[n].append(block)
        for n in names:
            spread = rounds_spread(per_round[n])
            settled = warm[n]["settled"] and (spread is None or spread <= 100 * ROUNDS_TOL)
            res[n][f"b{b}"] = {**percentiles(times[n]), "spread_pct": spread,
                               "warmup_calls": warm[n]["warmup_calls"], "settled": settled}
    return res
