"""The timing engine (automl/runtime/timing.py, which times compress's table) warms up until timings
settle, reports the spread, and no speed-up is claimed from a reference that did not settle (issue 12,
item 9). A fake clock makes every timing exact, on any machine and under any load."""

from __future__ import annotations

from collections.abc import Callable

from automl.runtime.timing import latencies, rounds_spread, warm_up
from compress.bench import BenchConfig
from compress.verdict import Variant, gate


class FakeClock:
    """Seconds that pass only when a fake call says so: the timings are exact on any machine."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def slow_then_fast(clock: FakeClock, slow_calls: int, slow_s: float = 0.004,
                   fast_s: float = 0.0004) -> Callable[[], None]:
    """A call that is ``slow_s`` long for its first ``slow_calls`` calls, then ``fast_s``."""
    count = [0]

    def call() -> None:
        count[0] += 1
        clock.t += slow_s if count[0] <= slow_calls else fast_s

    return call


def decaying(clock: FakeClock, slow_s: float = 0.006, fast_s: float = 0.0004,
             rate: float = 0.93) -> Callable[[], None]:
    """A call that starts ``slow_s`` + ``fast_s`` long and speeds up geometrically (allocator, thread
    pools, caches warming), as a first PyTorch eager call does."""
    count = [0]

    def call() -> None:
        count[0] += 1
        clock.t += fast_s + slow_s * rate ** count[0]

    return call


def test_warm_up_runs_until_the_slow_start_is_over() -> None:
    clock = FakeClock()
    info = warm_up(decaying(clock), min_calls=10, max_s=10.0, clock=clock)
    # A fixed 10 calls would time calls still ~3 ms slow; settling takes some 50 calls.
    assert info["settled"] and info["warmup_calls"] > 40, info


def test_warm_up_that_never_settles_says_so() -> None:
    clock = FakeClock()
    flip = [0]

    def alternating() -> None:  # window medians alternate between 0.4 ms and 4 ms
        flip[0] += 1
        clock.t += 0.004 if (flip[0] // 5) % 2 else 0.0004

    info = warm_up(alternating, min_calls=0, max_s=0.3, clock=clock)
    assert not info["settled"] and info["warmup_s"] >= 0.3


def test_latencies_report_spread_and_settled_after_a_slow_start() -> None:
    clock = FakeClock()
    cfg = BenchConfig(warmup=5, repeats=30, batches=(1,), warmup_max_s=10.0)
    res = latencies({"m": lambda b: decaying(clock)}, cfg, rounds=5, clock=clock)["m"]["b1"]
    assert res["settled"] and res["warmup_calls"] > 40, res
    assert res["p50"] < 1.5  # ms: the fast phase, not the 6 ms start
    assert res["spread_pct"] is not None and 0 <= res["spread_pct"] <= 25
    assert rounds_spread([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]) == 66.7  # (2 - 1) / 1.5, in percent
    assert rounds_spread([[1.0], [2.0]]) is None  # one call a round says nothing


def test_a_slow_phase_that_outlasts_the_warm_up_is_not_settled() -> None:
    """Steady at 4 ms for 45 calls (the warm-up cannot see the end coming), then 0.4 ms: the timed
    rounds disagree, so the measurement is marked unsettled instead of publishing either number."""
    clock = FakeClock()
    cfg = BenchConfig(warmup=5, repeats=30, batches=(1,), warmup_max_s=10.0)
    res = latencies({"m": lambda b: slow_then_fast(clock, 45)}, cfg, rounds=5, clock=clock)["m"]["b1"]
    assert res["warmup_calls"] < 45 and not res["settled"] and res["spread_pct"] > 25, res


def _variant(name: str, kind: str, p50: float, settled: bool = True) -> Variant:
    lat = {"b1": {"p50": p50 / 10, "p95": p50 / 5, "settled": settled},
           "b64": {"p50": p50, "p95": p50 * 2, "settled": settled}}
    return Variant(name, kind, "fp32", f"/x/{name}.onnx", size_bytes=100, metric_value=0.9, latency_ms=lat)


def test_no_speedup_from_an_unsettled_reference() -> None:
    rows = [_variant("fp32", "fp32", 2.0, settled=False), _variant("int8", "int8", 1.0)]
    gate(rows, 0.9, "maximize", "accuracy", 1.0, 1e-3, {"b64": {"p50": 4.0, "settled": False}})
    assert rows[1].speedup_vs_fp32 is None and rows[1].speedup_vs_torch is None
    assert "did not settle" in rows[1].reason
    settled = [_variant("fp32", "fp32", 2.0), _variant("int8", "int8", 1.0)]
    gate(settled, 0.9, "maximize", "accuracy", 1.0, 1e-3, {"b64": {"p50": 4.0, "settled": True}})
    assert settled[1].speedup_vs_fp32 == 2.0 and settled[1].speedup_vs_torch == 4.0
