"""The parts of ``automl serve`` without HTTP: micro-batcher, metrics text, output formatting, settings."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from automl.exceptions import ConfigError, InputError
from automl.runtime.inference import InputSpec, format_outputs, parse_top_k
from automl.serve.batching import MicroBatcher
from automl.serve.http import http_status
from automl.serve.metrics import CONTENT_TYPE, ServeMetrics, parse_histogram, samples, value
from automl.serve.settings import ServeSettings


def _double(calls: list[int], delay: float = 0.005):
    def run(x: np.ndarray) -> np.ndarray:
        calls.append(int(x.shape[0]))
        if (x < 0).any():
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : negative input")
        time.sleep(delay)  # a model call takes time, so requests pile up meanwhile
        return x * 2

    return run


def test_batcher_gathers_concurrent_requests_and_answers_each_its_own() -> None:
    calls: list[int] = []

    async def main() -> list[np.ndarray]:
        b = MicroBatcher(_double(calls), max_batch=8, wait_ms=20)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(np.full((1, 3), i, np.float32)) for i in range(50)))
        finally:
            await b.stop()

    outs = asyncio.run(main())
    for i, y in enumerate(outs):
        np.testing.assert_array_equal(y, np.full((1, 3), 2 * i, np.float32))
    assert sum(calls) == 50 and max(calls) == 8  # batches fill up to max_batch and never beyond
    assert len(calls) <= 10


def test_batcher_waits_at_most_wait_ms_and_runs_big_requests_alone() -> None:
    calls: list[int] = []

    async def main() -> tuple[float, np.ndarray]:
        b = MicroBatcher(_double(calls, 0.0), max_batch=4, wait_ms=30)
        await b.start()
        t0 = time.perf_counter()
        await b.submit(np.ones((1, 2), np.float32))  # alone: waits out the 30 ms window, then runs
        waited = time.perf_counter() - t0
        big = await b.submit(np.arange(20, dtype=np.float32).reshape(10, 2))  # larger than max_batch
        await b.stop()
        return waited, big

    waited, big = asyncio.run(main())
    assert 0.025 <= waited < 1.0
    assert calls == [1, 10]
    np.testing.assert_array_equal(big, np.arange(20, dtype=np.float32).reshape(10, 2) * 2)


def test_batcher_isolates_a_failing_request_and_bounds_its_queue() -> None:
    calls: list[int] = []

    async def main() -> list[object]:
        b = MicroBatcher(_double(calls), max_batch=16, wait_ms=20, max_queue=6)
        await b.start()
        inputs = [np.full((1, 1), v, np.float32) for v in (1, 2, -1, 3)] + [np.ones((4, 1), np.float32)]
        out = await asyncio.gather(*(b.submit(x) for x in inputs), return_exceptions=True)
        await b.stop()
        with pytest.raises(InputError) as err:
            await b.submit(np.ones((1, 1), np.float32))
        assert http_status(err.value) == 503
        return out

    out = asyncio.run(main())
    assert [float(np.asarray(o).ravel()[0]) for o in (out[0], out[1], out[3])] == [2.0, 4.0, 6.0]
    assert isinstance(out[2], InputError) and out[2].code == "model_rejected_input" and "negative" in str(out[2])
    assert isinstance(out[4], InputError) and http_status(out[4]) == 503  # 4 queued + 4 more > max_queue 6


def test_batcher_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="--max-batch"):
        MicroBatcher(lambda x: x, max_batch=0)
    with pytest.raises(ConfigError, match="--batch-wait-ms"):
        MicroBatcher(lambda x: x, wait_ms=-1)


def test_metrics_text_round_trips() -> None:
    m = ServeMetrics(info={"task": "image", "sha256": 'a"b'}, queue_size=lambda: 3)
    for size in (1, 3, 3, 40):
        m.observe_batch(size, 0.002)
    m.observe_request("/predict", 200, 0.004)
    m.observe_request("/predict", 422, 0.001)
    m.observe_error("wrong_shape")
    text = m.render()
    assert CONTENT_TYPE.startswith("text/plain")  # the Prometheus text exposition, not JSON
    h = parse_histogram(text, "automl_batch_size")  # parsed with prometheus_client.parser
    assert h["1"] == 1 and h["2"] == 1 and h["4"] == 3 and h["64"] == 4 and h["+Inf"] == 4
    assert h["_count"] == 4 and h["_sum"] == 47
    assert value(text, "automl_requests_total", path="/predict", status="422") == 1
    assert value(text, "automl_errors_total", code="wrong_shape") == 1
    assert value(text, "automl_samples_total") == 47 and value(text, "automl_queue_samples") == 3
    assert value(text, "automl_model_info", task="image", sha256='a"b') == 1  # label values escaped and read back
    lat = {k: v for k, v in samples(text).items() if k[0] == "automl_request_latency_seconds_count"}
    assert lat == {("automl_request_latency_seconds_count", (("path", "/predict"),)): 2}


def test_each_app_has_its_own_registry() -> None:
    a, b = ServeMetrics(info={"task": "image"}), ServeMetrics(info={"task": "text"})
    a.observe_batch(5, 0.01)
    assert value(a.render(), "automl_samples_total") == 5 and value(b.render(), "automl_samples_total") == 0


def test_format_outputs() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]], np.float32)
    out = format_outputs(logits, ["a", "b", "c"], top_k=2)
    assert [o["label"] for o in out] == ["a", "b"] and [o["class_index"] for o in out] == [0, 1]
    p = np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum()
    assert out[0]["probability"] == pytest.approx(p[0])
    assert [q["label"] for q in out[0]["probabilities"]] == ["a", "b"]
    assert len(format_outputs(logits, ["a", "b", "c"], top_k=99)[0]["probabilities"]) == 3
    binary = format_outputs(np.array([[0.0], [2.0]]), ["no", "yes"])
    assert binary[1]["label"] == "yes" and binary[1]["probability"] == pytest.approx(1 / (1 + np.exp(-2)))
    assert format_outputs(np.array([[1.5], [np.nan]]), []) == [{"value": 1.5}, {"value": None}]
    assert format_outputs(np.array([[1.0, 2.0]]), []) == [{"values": [1.0, 2.0]}]


def test_parse_top_k() -> None:
    assert parse_top_k(None) == 5 and parse_top_k("3") == 3
    for bad in ("x", "0", "-2", "1.5"):
        with pytest.raises(InputError):
            parse_top_k(bad)


def test_input_spec_image_checks() -> None:
    spec = InputSpec({"kind": "image"}, np.float32, (1, 2, 2), max_samples=3)
    good = spec.from_json([[[[0, 1], [2, 3]]]])
    assert good.dtype == np.float32 and good.shape == (1, 1, 2, 2)
    cases = {
        "wrong_shape": [[[0, 1], [2, 3]]],
        "wrong_dtype": [[[["0", "1"], ["2", "3"]]]],
        "not_finite": [[[[float("inf"), 1], [2, 3]]]],
        "too_many_inputs": [[[[0, 1], [2, 3]]]] * 4,
        "no_inputs": [],
        "wrong_type": [{"a": 1}],
    }
    for code, inputs in cases.items():
        with pytest.raises(InputError) as err:
            spec.from_json(inputs)
        assert err.value.code == code, (code, str(err.value))


def test_serve_settings_validate(tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert ServeSettings(model=str(model)).validate().port == 8000
    for kw, needle in (({"port": 70000}, "--port"), ({"batch_wait_ms": -1}, "--batch-wait-ms"),
                       ({"api_key": "a b"}, "--api-key"), ({"max_body_bytes": 10}, "--max-body-mb"),
                       ({"max_samples": 0}, "--max-samples"), ({"threads": -1}, "--threads")):
        with pytest.raises(ConfigError, match=needle):
            ServeSettings(model=str(model), **kw).validate()
