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

import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

# This module is imported only to serve, so FastAPI at module level does not slow down ``automl --help``;
# the endpoints' annotations must resolve from module globals for FastAPI to inject the Request.
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from automl.serve.batching import MicroBatcher
from automl.serve.metrics import ServeMetrics
from automl.serve.runtime import InputError, OnnxModel, format_outputs, parse_top_k

if TYPE_CHECKING:
    from automl.serve.server import ServeSettings

log = logging.getLogger("automl.serve")

ROUTES = ("/predict", "/health", "/metadata", "/metrics")
NPY_TYPES = ("application/x-npy", "application/octet-stream")  # numpy.save bytes: the fast path for big tensors
# Content types read as JSON: curl -d sends form-urlencoded unless told otherwise, so accept it when it parses.
JSON_TYPES = ("", "application/json", "text/json", "text/plain", "application/x-www-form-urlencoded")
# Parse JSON bodies larger than this on a worker thread: no faster (the GIL), but the event loop keeps
# answering other requests meanwhile instead of stalling for the whole parse.
OFFLOAD_BYTES = 256 * 1024
DRAIN_BYTES = 64 * 1024 * 1024  # read (and drop) up to this much of an oversized body so the client sees the 413


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _error_body(code: str, message: str) -> bytes:
    return _dumps({"error": code, "detail": message})


class _GuardMiddleware:
    """Pure ASGI middleware (cheap per request): API-key check, request count and latency metrics."""

    def __init__(self, app: Any, metrics: ServeMetrics, api_key: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode() if api_key else None

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        label = path if path in ROUTES else "other"
        status = [500]

        async def send_and_record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            if self.key is not None and path != "/health" and not self._authorized(scope):
                self.metrics.observe_error("unauthorized")
                body = _error_body("unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'")
                await send_and_record({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="automl"')]})
                await send({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(label, status[0], time.perf_counter() - t0)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 InputError once it is over ``limit`` bytes."""
    length = request.headers.get("content-length")
    declared = None
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InputError(f"bad Content-Length header {length[:40]!r}", "bad_request", 400) from None
    chunks: list[bytes] = []
    size = 0
    over = declared is not None and declared > limit
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            over = True
        if over:
            chunks.clear()
            if size > limit + DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if over:
        shown = declared if declared is not None else size
        raise InputError(f"request body of {shown} bytes is over the limit of {limit} bytes", "body_too_large", 413)
    return b"".join(chunks)


async def _uploaded_files(request: Request, body: bytes, max_files: int, limit: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file part of a multipart body, in order."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> Any:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=max_files + 1, max_fields=100, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise InputError(f"too many files: more than {max_files + 1} in one request, the limit is {max_files}",
                             "too_many_samples", 413) from None
        raise InputError(f"malformed multipart body: {exc.message}", "malformed_multipart", 400) from None
    except Exception as exc:  # a missing boundary and other broken bodies
        raise InputError(f"malformed multipart body ({exc.__class__.__name__})", "malformed_multipart", 400) from None
    try:
        files = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or key, await value.read()))
    finally:
        await form.close()
    if not files:
        raise InputError("the multipart upload holds no files: send image files as form fields of type file",
                         "no_inputs")
    return files


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise InputError('empty request body: send JSON {"inputs": [...]} or image files', "malformed_json", 400)
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise InputError("request body is not UTF-8 JSON", "malformed_json", 400) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "malformed_json", 400) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", "malformed_json", 400) from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('the JSON body must be an object with an "inputs" list: {"inputs": [sample, ...]}',
                         "missing_inputs")
    return payload["inputs"]


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
        return Response(_error_body(code, message), status_code=status, media_type="application/json")

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> Response:
        return error(exc.status, exc.code, str(exc))

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
        return Response(_dumps({"status": "ok", "model": model.path.name, "sha256": model.sha256}),
                        media_type="application/json")

    @app.get("/metadata")
    async def metadata() -> Response:
        """Task, input shape and dtype, classes, model file hash, execution provider, serving limits."""
        info = model.describe()
        info["serving"] = {"max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
                           "max_samples": settings.max_samples, "max_body_bytes": settings.max_body_bytes}
        return Response(_dumps(info), media_type="application/json")

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests, latency, errors, batch sizes."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def predict(request: Request) -> Response:
        """JSON ``{"inputs": [...]}``, a multipart upload of image files, one raw image (``image/*``) or a
        ``.npy`` batch (``application/x-npy``) -> one prediction per sample."""
        try:
            top_k = parse_top_k(request.query_params.get("top_k"))
            body = await _read_body(request, settings.max_body_bytes)
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "multipart/form-data":
                blobs = await _uploaded_files(request, body, settings.max_samples, settings.max_body_bytes)
                x = await run_in_threadpool(model.input.from_images, blobs)
            elif ctype in NPY_TYPES:
                x = model.input.from_npy(body)
            elif ctype.startswith("image/"):
                x = await run_in_threadpool(model.input.from_images, [("body", body)])
            elif ctype in JSON_TYPES or ctype.endswith("+json"):
                if len(body) > OFFLOAD_BYTES:
                    x = await run_in_threadpool(lambda: model.input.from_json(_parse_json(body)))
                else:
                    x = model.input.from_json(_parse_json(body))
            else:
                raise InputError(f"unsupported Content-Type {ctype!r}: send application/json, multipart/form-data "
                                 "(image files), image/* or application/x-npy", "unsupported_media_type", 415)
            y = await batcher.submit(x)
            preds = format_outputs(y, model.classes, top_k)
            return Response(_dumps({"predictions": preds}), media_type="application/json")
        except InputError as exc:
            return error(exc.status, exc.code, str(exc))
        except Exception as exc:  # a bug, not the client's fault: answer 500 JSON and keep serving
            log.exception("predict failed")
            return error(500, "internal_error", f"{exc.__class__.__name__}: {str(exc)[:200]}")

    # A plain Starlette route: the hot path skips FastAPI's dependency solving (~0.1 ms a request); the
    # endpoint reads and checks the body itself anyway.
    app.add_route("/predict", predict, methods=["POST"])
    app.add_middleware(_GuardMiddleware, metrics=metrics, api_key=settings.api_key)
    return app
