"""HTTP plumbing of the server: error codes -> statuses, JSON error bodies, reading a bounded body,
multipart uploads, JSON parsing, and the guard middleware (API key, request metrics).

The library's ``InputError`` knows nothing of HTTP; ``STATUS`` maps its ``code`` to the status the
server answers with (422 when not listed).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from automl.exceptions import InputError
from automl.runtime.inference import MAX_TOP_K, parse_top_k
from automl.serve.metrics import ServeMetrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

OpenAPI = dict[str, Any]  # a piece of an OpenAPI document (JSON: nested dicts and lists)

ROUTES = ("/predict", "/health", "/metadata", "/metrics")
DRAIN_BYTES = 64 * 1024 * 1024  # read (and drop) up to this much of an oversized body so the client sees the 413

#: InputError code -> HTTP status; any other code is a 422 (the request was understood, its content is wrong)
STATUS: dict[str, int] = {
    "bad_request": 400, "malformed_json": 400, "malformed_npy": 400, "malformed_multipart": 400,
    "unauthorized": 401, "not_found": 404, "method_not_allowed": 405,
    "too_many_inputs": 422,
    "too_many_samples": 413, "body_too_large": 413, "image_too_large": 413, "text_too_long": 413,
    "unsupported_media_type": 415, "overloaded": 503, "unavailable": 503,
}


CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection first": counted, never sent


def http_status(exc: InputError) -> int:
    """The HTTP status of an input error."""
    return STATUS.get(exc.code, 422)


def quiet_parsers() -> None:
    """python-multipart logs a warning line per malformed part (on stderr, once per hostile request);
    the client gets a 400 that says what was wrong, so keep those lines out of the server log."""
    for name in ("python_multipart", "python_multipart.multipart", "multipart", "multipart.multipart"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --- OpenAPI: /predict is a plain Starlette route (fast path), so its schema is written here --------

_ERROR = {"type": "object", "required": ["error", "detail"],
          "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
_JSON_ERROR = {"content": {"application/json": {"schema": _ERROR}}}
_PREDICTION = {"type": "object", "properties": {
    "label": {"type": "string"}, "class_index": {"type": "integer"}, "probability": {"type": ["number", "null"]},
    "probabilities": {"type": "array", "items": {"type": "object"}}, "value": {"type": ["number", "null"]},
    "values": {"type": "array", "items": {"type": ["number", "null"]}}}}
HEALTH_RESPONSES: dict[int | str, OpenAPI] = {200: {"description": "The model is loaded.", "content": {
    "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}
METADATA_RESPONSES: dict[int | str, OpenAPI] = {
    200: {"description": "The model, its input and preprocessing, the serving limits and its lineage.",
          "content": {"application/json": {"schema": {"type": "object"}}}},
    401: {"description": "Missing or wrong API key.", **_JSON_ERROR}}
METRICS_RESPONSES: dict[int | str, OpenAPI] = {
    200: {"description": "Prometheus text exposition format.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    401: {"description": "Missing or wrong API key.", **_JSON_ERROR}}
PREDICT_OPERATION: OpenAPI = {
    "summary": "Predict",
    "description": (
        'JSON {"inputs": [sample, ...]}: image tensors already normalised, or raw pixel arrays with '
        '"pixels": "raw" (e.g. {"inputs": [[[0, 255], [255, 0]]], "pixels": "raw"} for a 2 x 2 grey '
        "image; resized and normalised exactly as uploaded files); tabular records (objects) or encoded "
        "rows; texts or token-id lists. Or image files (multipart/form-data), one image (image/*), or a "
        "numpy.save batch (application/x-npy)."),
    "operationId": "predict",
    "parameters": [{"name": "top_k", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 5}}],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
            "inputs": {"type": "array", "items": {}},
            "pixels": {"type": "string", "enum": ["raw", "normalized"]}}}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {
        "200": {"description": "One prediction per sample, in order.", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"predictions": {"type": "array", "items": _PREDICTION}}}}}},
        **{str(code): {"description": why, **_JSON_ERROR} for code, why in (
            (400, "Malformed body."), (401, "Missing or wrong API key."), (413, "Too large: body, samples, image."),
            (415, "Unsupported Content-Type."), (422, "The inputs do not fit the model."),
            (503, "Overloaded or shutting down."))}},
}


def with_predict_schema(app: FastAPI, max_samples: int) -> OpenAPI:
    """FastAPI's OpenAPI schema of ``app`` plus the ``/predict`` operation (cached on the app)."""
    if app.openapi_schema is None:
        import copy

        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description="automl serve: predictions of one ONNX model.")
        operation = copy.deepcopy(PREDICT_OPERATION)
        inputs = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["inputs"]
        inputs.update(minItems=1, maxItems=max_samples)
        schema.setdefault("paths", {})["/predict"] = {"post": operation}
        app.openapi_schema = schema
    return app.openapi_schema


QUERY_PARAMETERS = ("top_k",)  # the only query parameters /predict takes


def predict_query(request: Request) -> int:
    """``/predict``'s query string -> top_k. A 422 ``invalid_parameter`` for an unknown or repeated
    name (a typo such as ``topk=3`` would otherwise be ignored without a word) and for a value out of
    range; the query string's size is bounded by the server's header limit."""
    params = request.query_params
    for name in params:
        if name not in QUERY_PARAMETERS:
            raise InputError(f"unknown query parameter {name[:40]!r}: /predict takes {', '.join(QUERY_PARAMETERS)}",
                             "invalid_parameter")
        if len(params.getlist(name)) > 1:
            raise InputError(f"query parameter {name!r} is given {len(params.getlist(name))} times, once at most",
                             "invalid_parameter")
    return parse_top_k(params.get("top_k"))


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def error_body(code: str, message: str) -> bytes:
    return dumps({"error": code, "detail": message})


class GuardMiddleware:
    """Pure ASGI middleware (cheap per request): API-key check, request count and latency metrics."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, api_key: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode() if api_key else None

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        label = path if path in ROUTES else "other"
        status = [500]

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            if self.key is not None and path != "/health" and not self._authorized(scope):
                self.metrics.observe_error("unauthorized")
                body = error_body("unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'")
                await send_and_record({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="automl"')]})
                await send({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(label, status[0], time.perf_counter() - t0)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 InputError once it is over ``limit`` bytes."""
    length = request.headers.get("content-length")
    declared = None
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InputError(f"bad Content-Length header {length[:40]!r}", "bad_request") from None
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
        raise InputError(f"request body of {shown} bytes is over the limit of {limit} bytes", "body_too_large")
    return b"".join(chunks)


async def uploaded_files(request: Request, body: bytes, max_files: int, limit: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file part of a multipart body, in order."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=max_files + 1, max_fields=100, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise InputError(f"too many files: more than {max_files + 1} in one request, the limit is {max_files}",
                             "too_many_samples") from None
        raise InputError(f"malformed multipart body: {exc.message}", "malformed_multipart") from None
    except Exception as exc:  # a missing boundary and other broken bodies
        raise InputError(f"malformed multipart body ({exc.__class__.__name__})", "malformed_multipart") from None
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


def parse_json(body: bytes) -> dict[str, object]:
    """A JSON request body -> the request object (with its ``inputs`` list)."""
    if not body.strip():
        raise InputError('empty request body: send JSON {"inputs": [...]} or image files', "malformed_json")
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise InputError("request body is not UTF-8 JSON", "malformed_json") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "malformed_json") from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", "malformed_json") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int limit)
        raise InputError(f"malformed JSON: {str(exc)[:120]}", "malformed_json") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('the JSON body must be an object with an "inputs" list: {"inputs": [sample, ...]}',
                         "missing_inputs")
    return payload


