"""Server metrics with ``prometheus_client``, in a registry of the app's own (not the process-global
one, so two apps in one process, as in the tests, never share or clash).

Metrics (all prefixed ``automl_``):

- ``requests_total{path,status}``: HTTP requests answered (status 499: the client went away first)
- ``request_latency_seconds{path}``: histogram of time from request start to response end
- ``errors_total{code}``: 4xx/5xx answers by error code (``wrong_shape``, ``not_finite`` …)
- ``samples_total``: samples predicted
- ``batch_size``: histogram of samples per model call (micro-batching at work when > 1)
- ``inference_seconds``: histogram of the duration of one model call
- ``queue_samples``: samples waiting for the next model call (gauge)
- ``model_info{task,variant,provider,sha256}``: always 1
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST  # the Prometheus text exposition format, text/plain


class ServeMetrics:
    """All server metrics of one app; thread-safe (the inference thread reports batches)."""

    def __init__(self, info: dict[str, str] | None = None, queue_size: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_size = queue_size
        r = self.registry
        self.requests = Counter("automl_requests", "HTTP requests answered, by path and status.",
                                ["path", "status"], registry=r)
        self.latency = Histogram("automl_request_latency_seconds", "Time from request start to the end of the "
                                 "response.", ["path"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("automl_errors", "Error answers (4xx and 5xx), by error code.", ["code"], registry=r)
        self.samples = Counter("automl_samples", "Samples predicted.", registry=r)
        self.batch_size = Histogram("automl_batch_size", "Samples per model call (micro-batching).",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("automl_inference_seconds", "Duration of one model call.",
                                   buckets=LATENCY_BUCKETS, registry=r)
        queue = Gauge("automl_queue_samples", "Samples waiting for the next model call.", registry=r)
        queue.set_function(lambda: float(self.queue_size()) if self.queue_size else 0.0)
        info = dict(info or {})
        model = Gauge("automl_model_info", "The model being served.", list(info), registry=r)
        (model.labels(**info) if info else model).set(1)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def observe_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.samples.inc(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, parsed with ``prometheus_client.parser``:
    ``{(name, sorted label pairs): value}`` (for tests, benchmarks and scripts)."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def value(text: str | bytes, name: str, **labels: str) -> float:
    """One sample's value (0 when absent, as for a counter never incremented)."""
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def parse_histogram(text: str | bytes, name: str) -> dict[str, float]:
    """One unlabelled histogram from exposition text: ``{le: cumulative count}`` plus ``_sum`` and
    ``_count``; ``le`` as written by the bucket bounds (``"1"``, ``"+Inf"``)."""
    out: dict[str, float] = {}
    for (sample, labels), v in samples(text).items():
        if sample == f"{name}_bucket":
            le = dict(labels)["le"]
            out[_short(le)] = v
        elif sample in (f"{name}_sum", f"{name}_count"):
            out[sample[len(name):]] = v
    return out


def _short(le: str) -> str:
    """``"1.0"`` -> ``"1"`` (prometheus_client writes floats), ``"+Inf"`` unchanged."""
    f = float(le)
    if f == float("inf"):
        return "+Inf"
    return str(int(f)) if f.is_integer() else repr(f)
