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

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

# This module is imported only to serve, so FastAPI at module level does not slow down ``automl --help``;
# the endpoints' annotations must resolve from module globals for FastAPI to inject the Request.
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from automl.exceptions import InputError
from automl.runtime.inference import OnnxModel, format_outputs
from automl.serve.batching import MicroBatcher
from automl.serve.http import (
    CLIENT_CLOSED,
    HEALTH_RESPONSES,
    METADATA_RESPONSES,
    METRICS_RESPONSES,
    GuardMiddleware,
    dumps,
    error_body,
    http_status,
    parse_json,
    predict_query,
    quiet_parsers,
    read_body,
    uploaded_files,
    with_predict_schema,
)
from automl.serve.metrics import CONTENT_TYPE, ServeMetrics
from automl.serve.protocol import REFUSED_SCOPE_KEY

if TYPE_CHECKING:
    import numpy as np

    from automl.serve.settings import ServeSettings

log = logging.getLogger("automl.serve")

NPY_TYPES = ("application/x-npy", "application/octet-stream")  # numpy.save bytes: the fast path for big tensors
# Content types read as JSON: curl -d sends form-urlencoded unless told otherwise, so accept it when it parses.
JSON_TYPES = ("", "application/json", "text/json", "text/plain", "application/x-www-form-urlencoded")
# Parse JSON bodies larger than this on a worker thread: no faster (the GIL), but the event loop keeps
# answering other requests meanwhile instead of stalling for the whole parse.
OFFLOAD_BYTES = 32 * 1024
TRIM_SECONDS = 5.0  # how often freed heap memory is handed back to the system


def served_lineage(path: Path) -> dict[str, Any]:
    """The model file's chain back to its study and trial (``automl.lineage.trace``), checked once at
    start-up, as ``/metadata`` shows it: files by name, hash and status (their folders on this server
    are left out; outside the folder above the model's only .pt/.onnx parents are opened, and the
    study database is not); ``{"error": ...}`` when the chain cannot be read."""
    from automl.exceptions import AutomlError
    from automl.lineage.trace import trace

    try:
        # beyond the folder above the model's (compressed/ -> the run), only model files: a served
        # file's record must not make the server read or hash any other file on this machine
        chain = trace(path, within=path.resolve().parent.parent)
    except AutomlError as exc:
        return {"ok": False, "error": str(exc)}
    for link in chain["links"]:
        link.pop("path", None)
        if isinstance(link.get("measured"), dict):
            link["measured"].pop("report", None)
    chain["file"] = Path(chain["file"]).name
    return chain


def create_app(model: OnnxModel, settings: ServeSettings) -> FastAPI:
    """The app serving ``model``; the micro-batcher starts and stops with the app's lifespan."""
    metrics = ServeMetrics(info={"task": model.task, "variant": str(model.meta.get("variant", "")),
                                 "provider": model.provider, "sha256": model.sha256})
    batcher = MicroBatcher(model.run, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                           max_queue=settings.max_queue, on_batch=metrics.observe_batch)
    metrics.queue_size = lambda: batcher.queued_samples

    async def trim_memory() -> None:
        from automl.serve._memory import malloc_trim

        while True:  # every TRIM_SECONDS, on a worker thread: trimming takes the allocator's locks
            await asyncio.sleep(TRIM_SECONDS)
            await run_in_threadpool(malloc_trim)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        trimmer = asyncio.create_task(trim_memory(), name="automl-trim")
        try:
            yield
        finally:
            trimmer.cancel()
            await batcher.stop()

    lineage = served_lineage(model.path)
    quiet_parsers()
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
        response = error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        response.headers.update(exc.headers or {})  # 405 carries Allow
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(422, "invalid_request", str(exc.errors())[:300])

    @app.api_route("/health", methods=["GET", "HEAD"], responses=HEALTH_RESPONSES)
    async def health() -> Response:
        """Liveness: the model is loaded and the server answers."""
        return Response(dumps({"status": "ok", "model": model.path.name, "sha256": model.sha256}),
                        media_type="application/json")

    @app.get("/metadata", responses=METADATA_RESPONSES)
    async def metadata() -> Response:
        """Task, input shape and dtype, classes, preprocessing (mean/std, input size, channels …), model
        file hash, execution provider, serving limits."""
        info = model.describe()
        info["serving"] = {"max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
                           "max_samples": settings.max_samples, "max_body_bytes": settings.max_body_bytes,
                           "max_image_pixels": settings.max_image_pixels, "max_text_chars": settings.max_text_chars}
        info["lineage"] = lineage
        return Response(dumps(info), media_type="application/json")

    @app.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        """Prometheus text: requests, latency, errors, batch sizes."""
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE})

    def from_json(payload: dict[str, object]) -> np.ndarray:
        options = {k: v for k, v in payload.items() if k != "inputs"}
        return model.input.from_json(payload["inputs"], options)

    async def predict(request: Request) -> Response:
        """JSON ``{"inputs": [...]}``, a multipart upload of image files, one raw image (``image/*``) or a
        ``.npy`` batch (``application/x-npy``) -> one prediction per sample."""
        try:
            top_k = predict_query(request)
            body = await read_body(request, settings.max_body_bytes)
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            # Decoding and encoding run on a worker thread unless the body is small, so the event loop
            # keeps answering (/health and everyone else) while one request is heavy.
            if ctype == "multipart/form-data":
                blobs = await uploaded_files(request, body, settings.max_samples, settings.max_body_bytes)
                x = await run_in_threadpool(model.input.from_files, blobs)
            elif ctype.startswith("image/"):
                x = await run_in_threadpool(model.input.from_files, [("body", body)])
            elif ctype in NPY_TYPES or ctype in JSON_TYPES or ctype.endswith("+json"):
                decode = (lambda: model.input.from_npy(body)) if ctype in NPY_TYPES else (
                    lambda: from_json(parse_json(body)))
                x = await run_in_threadpool(decode) if len(body) > OFFLOAD_BYTES else decode()
            else:
                raise InputError(f"unsupported Content-Type {ctype!r}: send application/json, multipart/form-data "
                                 "(image files), image/* or application/x-npy", "unsupported_media_type")
            y = await batcher.submit(x)
            preds = format_outputs(y, model.classes, top_k, model.input.task, model.decision)
            return Response(dumps({"predictions": preds}), media_type="application/json")
        except InputError as exc:
            return error(http_status(exc), exc.code, str(exc))
        except ClientDisconnect:  # the client went away mid-upload: not a server error, nobody to answer
            refused = request.scope.get(REFUSED_SCOPE_KEY)
            if refused:  # the connection already answered it (the body was too slow): count that answer
                metrics.observe_error("body_timeout")
                return Response(status_code=refused)
            metrics.observe_error("client_disconnected")
            return Response(status_code=CLIENT_CLOSED)
        except Exception:  # a bug, not the client's fault: log it, answer 500 JSON with an id, keep serving
            error_id = uuid.uuid4().hex[:12]
            log.exception("predict failed (error id %s)", error_id)
            return error(500, "internal_error", f"internal server error; the server log has it under id {error_id}")

    # A plain Starlette route: the hot path skips FastAPI's dependency solving (~0.1 ms a request); the
    # endpoint reads and checks the body itself anyway.
    app.add_route("/predict", predict, methods=["POST"])
    app.openapi = lambda: with_predict_schema(app, settings.max_samples)  # type: ignore[method-assign]  # a plain route: add it by hand
    app.add_middleware(GuardMiddleware, metrics=metrics, api_key=settings.api_key)
    return app
