"""Prometheus text exposition (format 0.0.4) without a client library: counters and histograms.

Metrics (all prefixed ``automl_``):

- ``requests_total{path,status}``: HTTP requests answered
- ``request_latency_seconds{path}``: histogram of time from request start to response end
- ``errors_total{code}``: 4xx/5xx answers by error code (``wrong_shape``, ``not_finite`` …)
- ``samples_total``: samples predicted
- ``batch_size``: histogram of samples per model call (micro-batching at work when > 1)
- ``inference_seconds``: histogram of the duration of one model call
- ``queue_samples``: samples waiting for the next model call (gauge)
- ``model_info{task,variant,provider,sha256}``: always 1
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items()) + "}"


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class Histogram:
    """Cumulative-bucket histogram of one label set."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last = +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, running = [], 0
        for bound, c in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += c
            out.append(f"{name}_bucket{_labels({**labels, 'le': _num(bound)})} {running}")
        out.append(f"{name}_sum{_labels(labels)} {_num(self.total)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class ServeMetrics:
    """All server metrics; thread-safe (the inference thread reports batches)."""

    def __init__(self, info: dict[str, str] | None = None, queue_size: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self.info = dict(info or {})
        self.queue_size = queue_size
        self.requests: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.inference = Histogram(LATENCY_BUCKETS)
        self.samples = 0

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.latency.get(path)
            if hist is None:
                hist = self.latency[path] = Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)

    def observe_error(self, code: str) -> None:
        with self._lock:
            self.errors[code] = self.errors.get(code, 0) + 1

    def observe_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.inference.observe(seconds)
            self.samples += size

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        with self._lock:
            lines = [
                "# HELP automl_requests_total HTTP requests answered, by path and status.",
                "# TYPE automl_requests_total counter",
                *(f"automl_requests_total{_labels({'path': p, 'status': s})} {n}"
                  for (p, s), n in sorted(self.requests.items())),
                "# HELP automl_request_latency_seconds Time from request start to the end of the response.",
                "# TYPE automl_request_latency_seconds histogram",
            ]
            for path, hist in sorted(self.latency.items()):
                lines += hist.lines("automl_request_latency_seconds", {"path": path})
            lines += [
                "# HELP automl_errors_total Error answers (4xx and 5xx), by error code.",
                "# TYPE automl_errors_total counter",
                *(f"automl_errors_total{_labels({'code': c})} {n}" for c, n in sorted(self.errors.items())),
                "# HELP automl_samples_total Samples predicted.",
                "# TYPE automl_samples_total counter",
                f"automl_samples_total {self.samples}",
                "# HELP automl_batch_size Samples per model call (micro-batching).",
                "# TYPE automl_batch_size histogram",
                *self.batch_size.lines("automl_batch_size", {}),
                "# HELP automl_inference_seconds Duration of one model call.",
                "# TYPE automl_inference_seconds histogram",
                *self.inference.lines("automl_inference_seconds", {}),
                "# HELP automl_queue_samples Samples waiting for the next model call.",
                "# TYPE automl_queue_samples gauge",
                f"automl_queue_samples {self.queue_size() if self.queue_size else 0}",
                "# HELP automl_model_info The model being served.",
                "# TYPE automl_model_info gauge",
                f"automl_model_info{_labels(self.info)} 1",
            ]
        return "\n".join(lines) + "\n"


def parse_histogram(text: str, name: str) -> dict[str, float]:
    """Read one unlabelled histogram back from exposition text: ``{le: cumulative count}`` plus
    ``_sum`` and ``_count`` (for tests and benchmarks)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum ") or line.startswith(f"{name}_count "):
            key, val = line.rsplit(" ", 1)
            out[key[len(name):]] = float(val)
    return out
