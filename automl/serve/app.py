"""The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /metadata``, ``GET /metrics``.

``POST /predict?top_k=K`` bodies, by Content-Type:

- ``application/json``: ``{"inputs": [sample, ...]}``: images as nested arrays of the model's input
  shape (already preprocessed), tabular records (objects) or encoded rows, texts or token-id lists;
- ``multipart/form-data``: one or more image files, preprocessed exactly as in training;
- ``image/*``: one image file as the whole body;
- ``application/x-npy``: a ``numpy.save`` batch (no pickles): the fast path for large tensors, as
  parsing thousands of JSON numbers costs milliseconds.

The answer is ``{"predictions": [...]}``, one object per sample in order: ``label``, ``class_index``,
``probability`` and ``probabilities`` (the top-k, best first), or ``value`` for regression.

Every error is a JSON body ``{"error": CODE, "detail": MESSAGE}`` with a 4xx status that says what
was wrong; an unexpected failure is a 500 of the same shape, and the server keeps serving.
With an API key, every path except ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

# This module is imported only to serve, so FastAPI at module level does not slow down ``automl --help``;
# the endpoints' annotations must resolve from module globals for FastAPI to inject the Request.
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from automl.exceptions import InputError
from automl.inference import OnnxModel, format_outputs, parse_top_k
from automl.serve.batching import MicroBatcher
from automl.serve.http import (
    GuardMiddleware,
    dumps,
    error_body,
    http_status,
    parse_json,
    read_body,
    uploaded_files,
)
from automl.serve.metrics import CONTENT_TYPE, ServeMetrics

if TYPE_CHECKING:
    from automl.serve.server import ServeSettings

log = logging.getLogger("automl.serve")

NPY_TYPES = ("application/x-npy", "application/octet-stream")  # numpy.save bytes: the fast path for big tensors
# Content types read as JSON: curl -d sends form-urlencoded unless told otherwise, so accept it when it parses.
JSON_TYPES = ("", "application/json", "text/json", "text/plain", "application/x-www-form-urlencoded")
# Parse JSON bodies larger than this on a worker thread: no faster (the GIL), but the event loop keeps
# answering other requests meanwhile instead of stalling for the whole parse.
OFFLOAD_BYTES = 256 * 1024


def create_app(model: OnnxModel, settings: ServeSettings) -> FastAPI:
    """The app serving ``model``; the micro-batcher starts and stops with the app's lifespan."""
    metrics = ServeMetrics(info={"task": model.task, "variant": str(model.meta.get("variant", "")),
                                 "provider": model.provider, "sha256": model.sha256})
    batcher = MicroBatcher(model.run, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                           max_queue=settings.max_queue, on_batch=metrics.observe_batch)
    metrics.queue_size = lambda: batcher.queued_samples

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="automl serve", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.model = model
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.settings = settings

    def error(status: int, code: str, message: str) -> Response:
        metrics.observe_error(code)
        return Response(error_body(code, message), status_code=status, media_type="application/json")

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> Response:
        return error(http_status(exc), exc.code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(422, "invalid_request", str(exc.errors())[:300])

    @app.get("/health")
    async def health() -> Response:
        """Liveness: the model is loaded and the server answers."""
        return Response(dumps({"status": "ok", "model": model.path.name, "sha256": model.sha256}),
                        media_type="application/json")

    @app.get("/metadata")
    async def metadata() -> Response:
        """Task, input shape and dtype, classes, model file hash, execution provider, serving limits."""
        info = model.describe()
        info["serving"] = {"max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
                           "max_samples": settings.max_samples, "max_body_bytes": settings.max_body_bytes}
        return Response(dumps(info), media_type="application/json")

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests, latency, errors, batch sizes."""
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE})

    def from_json(payload: dict[str, Any]) -> Any:
        options = {k: v for k, v in payload.items() if k != "inputs"}
        return model.input.from_json(payload["inputs"], options)

    async def predict(request: Request) -> Response:
        """JSON ``{"inputs": [...]}``, a multipart upload of image files, one raw image (``image/*``) or a
        ``.npy`` batch (``application/x-npy``) -> one prediction per sample."""
        try:
            top_k = parse_top_k(request.query_params.get("top_k"))
            body = await read_body(request, settings.max_body_bytes)
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "multipart/form-data":
                blobs = await uploaded_files(request, body, settings.max_samples, settings.max_body_bytes)
                x = await run_in_threadpool(model.input.from_files, blobs)
            elif ctype in NPY_TYPES:
                x = model.input.from_npy(body)
            elif ctype.startswith("image/"):
                x = await run_in_threadpool(model.input.from_files, [("body", body)])
            elif ctype in JSON_TYPES or ctype.endswith("+json"):
                if len(body) > OFFLOAD_BYTES:
                    x = await run_in_threadpool(lambda: from_json(parse_json(body)))
                else:
                    x = from_json(parse_json(body))
            else:
                raise InputError(f"unsupported Content-Type {ctype!r}: send application/json, multipart/form-data "
                                 "(image files), image/* or application/x-npy", "unsupported_media_type")
            y = await batcher.submit(x)
            preds = format_outputs(y, model.classes, top_k)
            return Response(dumps({"predictions": preds}), media_type="application/json")
        except InputError as exc:
            return error(http_status(exc), exc.code, str(exc))
        except Exception as exc:  # a bug, not the client's fault: answer 500 JSON and keep serving
            log.exception("predict failed")
            return error(500, "internal_error", f"{exc.__class__.__name__}: {str(exc)[:200]}")

    # A plain Starlette route: the hot path skips FastAPI's dependency solving (~0.1 ms a request); the
    # endpoint reads and checks the body itself anyway.
    app.add_route("/predict", predict, methods=["POST"])
    app.add_middleware(GuardMiddleware, metrics=metrics, api_key=settings.api_key)
    return app
